#!/usr/bin/env python
"""Serve an exported model: a web page for one film and an HTTP API (docs/app.md).

    python tools/serve.py --checkpoint deploy/model.onnx [--backend onnxruntime|openvino] \\
        [--host 127.0.0.1] [--port 8000] [--token-file F] [--max-upload-mb N]

Open http://127.0.0.1:8000/ and drop a PNG, JPEG or DICOM film; programs POST it to /v1/predict
(multipart field "file", or the raw body) and get the detections and findings that
tools/predict.py --backend onnxruntime writes for the same file. Class names, operating points and
sizes come from model.onnx. Runs on cxr_runtime alone (no torch, detectron2 or cxr). Binds
127.0.0.1 unless --host says otherwise; --token-file makes /v1/* require a bearer token.
Logic: cxr_runtime.serve.
"""

from cxr_runtime.serve.cli import main

if __name__ == "__main__":
    main(description=__doc__)
