"""The measurement engine: loads a model safely, counts its FLOPs, times it and
measures its energy. Imports neither Django nor anything of ours outside this
package, so it runs alone (``python -m workers.engine``) and in the worker's
sandboxed child process."""

ENGINE_VERSION = "0.1.0"
SCHEMA_VERSION = 2
