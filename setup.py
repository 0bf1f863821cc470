"""cxr: a detectron2 plugin for lesion detection on chest X-rays.

detectron2 itself is installed by ``tools/install_detectron2.py`` (see README): it has no wheels
on the package registries, so it is not listed in ``install_requires``.
"""
from setuptools import find_packages, setup

setup(
    name="cxr",
    version="0.1.0",
    description="detectron2 plugin for chest X-ray lesion detection and clinical evaluation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["cxr", "cxr.*", "cxr_runtime", "cxr_runtime.*"]),
    # the served app's page (tools/serve.py)
    package_data={"cxr_runtime.serve": ["static/*"]},
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "fvcore",
        "iopath<0.1.10",
        "pycocotools",
        "albumentations>=2.0",
        "pandas",
        "opencv-python-headless",
        "omegaconf",
        "tensorboard",
        "timm",
        "pydicom",
        "matplotlib",
        "setuptools<81",
    ],
)
