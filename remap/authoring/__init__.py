"""Tools for writing rule files, each usable on its own.

    examples       a rule file's inline examples, run like unit tests (``remap test``)
    pytest_plugin  each inline example as a pytest item (registered through ``pytest11``)
    explain        why a rule did or did not apply to a key (``remap explain``)
    lint           dead, overlapping and non-invertible rules; unreachable targets (``remap lint``)
    suggest        a draft rule file from a checkpoint and a target class (``remap suggest``)
"""
