"""gluon-dml: deep metric learning on MXNet/Gluon."""
import os
import re

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, 'gluon_dml', '__init__.py')) as f:
    version = re.search(r"__version__ = '([^']+)'|__version__ = \"([^\"]+)\"", f.read())
    version = version.group(1) or version.group(2)

setup(
    name='gluon-dml',
    version=version,
    description='Deep metric learning on MXNet/Gluon: losses, samplers, training, evaluation, search.',
    long_description=open(os.path.join(here, 'README.md'), encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['gluon_dml', 'gluon_dml.*']),
    # The Omniglot small background archives (MIT licence, see their LICENSE): the embedded
    # dataset of the default run.
    package_data={'gluon_dml.data': ['omniglot/*.zip', 'omniglot/LICENSE', 'omniglot/README.md']},
    include_package_data=False,
    # MXNet 1.9.1 needs numpy < 1.24, whose last releases support Python 3.8 - 3.11.
    python_requires='>=3.8,<3.12',
    install_requires=[
        'numpy>=1.17,<1.24',
        'gluoncv>=0.10',
        'scikit-learn',
        'scipy',
        'matplotlib',
        'Pillow',
        'tqdm',
        # A source-only package whose build imports pkg_resources (gone from setuptools>=70):
        # scripts/bootstrap.sh builds it with --no-build-isolation against setuptools<70.
        'visdom',
    ],
    extras_require={
        'cpu': ['mxnet==1.9.1', 'faiss-cpu'],
        # Checked with pip's resolver beside numpy<1.24: mxnet-cu112 1.9.1 + faiss-gpu-cu11 1.11.0
        # (docs/install.md, "GPU install"). Unpinned, the resolver picks 1.12.0, which is built against
        # numpy 2 and fails to import with numpy 1.23.
        'gpu': ['mxnet-cu112==1.9.1', 'faiss-gpu-cu11==1.11.0'],
        # pytest-xdist: pytest.ini runs the suite on every core (-n auto), each worker with its
        # share of the OpenMP threads (tests/conftest.py)
        'test': ['pytest>=7', 'pytest-timeout', 'pytest-xdist>=3'],
        # The Milvus index backend (gluon_dml/index/MILVUS.md). Checked with pip's resolver beside
        # numpy 1.23.5 on Python 3.11: pymilvus 3.0.2 + milvus-lite 2.5.1; milvus-lite 3.x
        # needs numpy >= 1.24, hence < 3.
        'milvus': ['pymilvus==3.0.2', 'milvus-lite>=2.5.1,<3'],
        # The HTTP search service (gluon-dml serve, docs/serve.md). Checked with pip's resolver
        # beside numpy 1.23.5 on Python 3.11 (they need no numpy): the versions tested.
        'serve': ['fastapi==0.165.0', 'uvicorn==0.54.0', 'python-multipart==0.0.34'],
        # ONNX export (docs/export.md, "Versions checked"). Checked beside numpy 1.23.5 on Python
        # 3.11 with pip's resolver and the conversion of real runs: onnxruntime 1.15 - 1.18.0
        # require numpy >= 1.24.2, 1.18.1 - 1.20.1 work; onnx 1.14.1 - 1.18.0 work with MXNet
        # 1.9.1's exporter, 1.19 removed onnx.mapping, which it imports.
        'onnx': ['onnx==1.17.0', 'onnxruntime==1.20.1'],
    },
    entry_points={'console_scripts': ['gluon-dml=gluon_dml.commands:main']},
)
