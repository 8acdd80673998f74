"""mlx_audio.server (mlx-audio >= 0.6, same arguments), runnable where MLX has no GPU.

mlx-audio's inference worker asks for a GPU stream (`mx.new_stream(mx.gpu)`). Where MLX has no GPU
backend (Linux with mlx[cpu]: the tests, CI) that raises in the worker thread, and every request then
waits forever while `GET /` still answers. There, a GPU stream is made on the CPU. On a Mac (Metal)
nothing changes.
"""

import mlx.core as mx

if not mx.is_available(mx.gpu):
    _new_stream = mx.new_stream

    def _cpu_stream(device):
        if getattr(device, "type", device) == mx.gpu:
            device = mx.cpu
        return _new_stream(device)

    mx.new_stream = _cpu_stream

from mlx_audio.server import main  # noqa: E402  (after the patch: its worker reads mx.new_stream)

if __name__ == "__main__":
    main()
