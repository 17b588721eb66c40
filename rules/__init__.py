"""The rule files remap ships. In an installed wheel this folder is the package ``remap._rules``
(see ``[tool.setuptools.package-dir]`` in pyproject.toml), so the files can be named: ``remap apply
distilhubert ...``. It holds no code."""
