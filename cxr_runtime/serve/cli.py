"""The command line of ``tools/serve.py``: flags, checks, then uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from typing import Sequence

from ..optional import import_optional
from .model import DEFAULT_MAX_PIXELS

#: the packages of the serve extra that the app's modules (app, schemas) import directly
SERVE_MODULES = ("fastapi", "pydantic", "python_multipart", "uvicorn")

__all__ = ["build_app", "is_loopback", "main", "parse_args", "read_token"]

logger = logging.getLogger("cxr_runtime.serve")


def parse_args(argv: Sequence[str] | None, description: str = "") -> argparse.Namespace:
    """The flags of ``tools/serve.py`` (argparse errors exit with status 2)."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--checkpoint", required=True, help="model.onnx from tools/export.py")
    p.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "openvino"))
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token-file", default="", help="file holding the bearer token for /v1/*")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest upload, MiB (413)")
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="largest film, width x height pixels (422 above, before decoding)",
    )
    p.add_argument("--workers", type=int, default=1, help="films predicted at once")
    p.add_argument("--queue", type=int, default=8, help="films waiting before 503")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (504)")
    p.add_argument("--threads", type=int, default=0, help="engine threads (0: one per core)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    args = p.parse_args(argv)  # fmt: skip
    for flag in ("max_upload_mb", "max_pixels", "workers", "timeout"):
        if getattr(args, flag) <= 0:
            p.error(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.queue < 0:
        p.error(f"--queue must be 0 or more, got {args.queue}")
    return args


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding white space removed).

    Raises:
        SystemExit naming the file when it is missing or empty.
    """
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as e:
        raise SystemExit(f"--token-file {path}: cannot read it ({type(e).__name__})") from None
    if not token:
        raise SystemExit(f"--token-file {path}: the file is empty")
    return token


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(args: argparse.Namespace):
    """Load the model and build the app of ``args`` (:func:`parse_args`)."""
    for module in SERVE_MODULES:  # a missing one names the serve extra
        import_optional(module, "tools/serve.py")
    from .app import ServeSettings, create_app
    from .model import ServedModel

    token = read_token(args.token_file) if args.token_file else None
    if not is_loopback(args.host) and token is None:
        logger.warning(
            "serving on %s, reachable from other machines, WITHOUT a token: anyone who can reach "
            "it can use the model; pass --token-file or bind 127.0.0.1", args.host,
        )  # fmt: skip
    model = ServedModel.load(args.checkpoint, args.backend, args.threads, args.max_pixels)
    settings = ServeSettings(token=token, max_upload_mb=args.max_upload_mb, workers=args.workers,
                             queue=args.queue, timeout_s=args.timeout)  # fmt: skip
    logger.info("model %s: %d classes, %s%s", model.card["name"], len(model.class_names),
                model.model_id, ", bearer token required" if token else "")  # fmt: skip
    return create_app(model, settings)


def main(argv: Sequence[str] | None = None, description: str = "") -> None:
    """Parse the flags, load the model and serve until interrupted."""
    uvicorn = import_optional("uvicorn", "tools/serve.py")

    args = parse_args(argv, description)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    log = logging.getLogger("cxr_runtime")
    log.addHandler(handler)
    log.setLevel(args.log_level.upper())
    app = build_app(args)
    limit = max(32, 4 * (args.workers + args.queue))
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                timeout_keep_alive=5, limit_concurrency=limit, server_header=False)  # fmt: skip
