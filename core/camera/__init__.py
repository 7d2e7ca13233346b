"""Camera geometry: where a camera stands and looks (pose), and what its pixels show on the ground."""
