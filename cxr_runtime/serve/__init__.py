"""The served app: a web page for people and an HTTP API for programs, on one exported model.

``tools/serve.py --checkpoint deploy/model.onnx`` runs it on uvicorn. It is part of the
torch-free runtime: it needs FastAPI, uvicorn and python-multipart besides what
:mod:`cxr_runtime` needs, and never imports torch, detectron2 or :mod:`cxr`.

- :mod:`cxr_runtime.serve.model`: the served model (detector, operating points, model card)
  and one film's answer, computed as ``tools/predict.py`` computes its rows;
- :mod:`cxr_runtime.serve.upload`: reading an upload into memory (size limit, multipart or
  raw body, content types); nothing is written to disk;
- :mod:`cxr_runtime.serve.app`: the ASGI app (routes, bounded queue, timeout, bearer token,
  security headers) and ``static/`` (the page);
- :mod:`cxr_runtime.serve.cli`: the command line of ``tools/serve.py``.
"""
