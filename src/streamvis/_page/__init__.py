"""The Bokeh side: each plot's figure and glyphs, and the documents pages follow runs in."""
