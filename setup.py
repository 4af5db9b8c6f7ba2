"""Install prompt_tuning: soft-prompt tuning of frozen T5 1.1 models in JAX/Flax."""
import setuptools

CORE = [  # model, prompt, train step, partitioning, checkpoints: no TensorFlow
    "jax>=0.10,<0.13",
    "flax>=0.10,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.11,<0.13",
    "numpy>=1.26",
    "msgpack>=1.0",
    "tensorstore>=0.1.60",
    "safetensors>=0.4",
    "sentencepiece>=0.2",
    "gin-config>=0.5,<0.6",
    "tqdm>=4.60",
    "tensorboardX>=2.6",
]
DATA = [  # the data package only
    "seqio>=0.0.19",
    "tensorflow>=2.16,<2.22",
    "tensorflow-datasets>=4.9,<5",
    "tensorflow-text>=2.16,<2.22",
    # Imported by TFDS when it prepares a dataset (DatasetBuilder.code_path) but declared by
    # tensorflow-datasets only for Python < 3.9; without it no real builder can prepare data.
    "importlib_resources>=5",
    "six>=1.12",  # imported by the TFDS GLUE builder, which does not declare it
]
ANALYSIS = [  # summaries and plots (prompt_tuning.analysis), and viewing a run's curves
    "matplotlib>=3.7",
    "tensorboard>=2.16",  # `tensorboard --logdir MODEL_DIR`; the trainer writes with tensorboardX
]
TEST = [
    "pytest>=8",
    "pytest-xdist>=3.5",
    "torch==2.13.0",  # CPU build; parity references only
    "transformers>=4.45,<6",
    "peft>=0.13,<1",
    # What the `t5` package's metric code imports (metrics parity reference). `t5` itself is
    # installed with `pip install --no-deps t5==0.9.4`: its declared dependencies would install
    # seqio-nightly and tfds-nightly (a 2023 4.9.2) over the seqio and tensorflow-datasets above.
    "scikit-learn>=1.3",
    "sacrebleu>=2",
    "rouge-score>=0.1.2",
    "babel>=2.9",
    "ruff>=0.6",            # pyflakes rules (ruff.toml)
    "import-linter>=2.1",   # the architecture contract (.importlinter)
]

setuptools.setup(
    name="prompt_tuning",
    version="0.1.0",
    description="Prompt tuning of frozen T5 1.1 models (Lester et al., 2021) in JAX/Flax, T5X-compatible.",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["prompt_tuning", "prompt_tuning.*"]) + ["prompt_tuning.configs"],
    package_dir={"prompt_tuning.configs": "configs"},
    package_data={"prompt_tuning": ["assets/*", "assets/**/*", "assets/**/.zarray"],
                  "prompt_tuning.configs": ["**/*.gin", "sweeps/*.json"]},
    install_requires=CORE + DATA + ANALYSIS,
    extras_require={"test": TEST},
)
