"""mlx_vlm.server with CORS closed.

mlx-vlm hard-codes `Access-Control-Allow-Origin: *` (with credentials) and has no flag to change it, so
any web page the user visits could POST to the server on loopback and read the reply. mlx-box answers
CORS at its proxy from [server] cors_origins; this starts mlx_vlm.server (mlx-vlm >= 0.7, same
arguments) with its CORS middleware removed, or replaced by one allowing only `--allowed-origins A,B`.
"""

import sys


def main():
    argv = sys.argv[1:]
    origins = []
    if "--allowed-origins" in argv:
        i = argv.index("--allowed-origins")
        if i + 1 < len(argv):
            origins = [o for o in argv[i + 1].split(",") if o]
        del argv[i : i + 2]

    import mlx_vlm.server as server

    app = server.app
    app.user_middleware = [
        m for m in app.user_middleware if getattr(m.cls, "__name__", "") != "CORSMiddleware"
    ]
    if origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"]
        )
    sys.argv = [sys.argv[0]] + argv
    server.main()


if __name__ == "__main__":
    main()
