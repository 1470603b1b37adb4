"""``python -m cftdata.backends.llama_server ARGS``: llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``, same arguments) with cftdata's llama.cpp extra-buffer policy applied,
so it runs on CPUs with AMX too (see :mod:`cftdata.backends.llama_runtime`)."""

from __future__ import annotations

import logging


def main() -> None:
    from cftdata.backends.llama_runtime import cpu_info, install_extra_buffers_policy

    enabled = install_extra_buffers_policy()
    logging.getLogger("cftdata").warning(
        "llama.cpp extra buffer types %s on %s", "on" if enabled else "off", cpu_info().describe())
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
