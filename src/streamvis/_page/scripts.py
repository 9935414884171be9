"""What a page runs of its own: the echo of each update once painted, and whether its WebGL
runs on a GPU (the session's clock, :mod:`session`)."""

__all__ = ["ECHO_JS", "GPU_JS", "HOLD_JS", "READY_JS"]

# Whether this page's WebGL runs on a GPU (software WebGL is far slower than a 2D canvas).
GPU_JS = """
if (window.streamvis_gpu === undefined) {
  let gpu = false;
  try {
    const gl = document.createElement("canvas").getContext("webgl");
    if (gl) {
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
      gpu = !/swiftshader|llvmpipe|softpipe|software|basic render/i.test(name);
      gl.getExtension("WEBGL_lose_context")?.loseContext();
    }
  } catch (error) {}
  window.streamvis_gpu = gpu;
}
const gpu = window.streamvis_gpu ? "gpu" : "cpu";
"""
# A page at a past step paints a step's plots together: the update pauses every plot view
# (``hold``) until its tick arrives, which releases them (or a second passes: never stuck).
_RELEASE_JS = """
window.streamvis_release ??= () => {
  const held = window.streamvis_held;
  window.streamvis_held = null;
  clearTimeout(window.streamvis_hold_timer);
  for (const view of held ?? []) {  // repaint only what changed meanwhile
    view.unpause(true);
    if (view._invalidate_all || view._invalidated_painters.size) view.schedule_paint();
  }
};
"""
HOLD_JS = (
    _RELEASE_JS
    + """
if (!hold.tags.length) { window.streamvis_release(); return; }
if (window.streamvis_held) return;
window.streamvis_held = [...Bokeh.index.query((view) => "_is_paused" in view)];
for (const view of window.streamvis_held) view.pause();
window.streamvis_hold_timer = setTimeout(window.streamvis_release, 1000);
"""
)
# Echo the clock's tick from the animation frame that paints what came with it, so the next
# update is on its way while this one paints: "tick gpu|cpu".
ECHO_JS = (
    GPU_JS
    + _RELEASE_JS
    + """
window.streamvis_release();
const tick = clock.tags[0];
requestAnimationFrame(() => { clock.text = `${tick} ${gpu}`; });
"""
)
# On load the page holds everything up to the current tick: say so, timing nothing.
READY_JS = GPU_JS + "clock.text = `${clock.tags[0]} ${gpu} ready`;"
