"""The command line as a newcomer meets it: --version, help for every option, examples, -v anywhere, a fast --help."""

import argparse
import subprocess
import sys

import pytest

from facegraph import __version__
from facegraph.cli import SUBCOMMANDS, build_parser, main


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"facegraph {__version__}"


def test_every_subcommand_has_examples_and_every_option_help():
    parsers = subcommand_parsers()
    assert list(parsers) == list(SUBCOMMANDS)
    undocumented = []
    for name, parser in parsers.items():
        epilog = parser.epilog or ""
        assert epilog.startswith("examples:\n") and f"facegraph {name}" in epilog, name
        stack = [(name, parser)]
        while stack:
            where, current = stack.pop()
            for action in current._actions:
                if isinstance(action, argparse._SubParsersAction):
                    stack += [(f"{where} {sub}", p) for sub, p in action.choices.items()]
                elif not action.help:
                    undocumented.append(f"{where} {action.option_strings or action.dest}")
    assert undocumented == []


def test_an_option_whose_help_states_its_default_shows_it_once():
    text = build_parser(["table2"])._subparsers._group_actions[0].choices["table2"].format_help()
    seeds = " ".join(text.split("--seeds SEEDS", 2)[2].split("--folds")[0].split())
    assert seeds.count("default") == 1 and "(default: None)" not in text


def test_verbose_is_accepted_after_the_subcommand_too():
    for argv in (["-v", "presets"], ["presets", "-v"], ["presets", "--verbose"],
                 ["prepare", "-v", "folder", "photos", "--out", "data"], ["prepare", "folder", "photos", "--out", "data", "-v"]):
        assert build_parser(argv).parse_args(argv).verbose is True, argv
    assert build_parser().parse_args(["presets"]).verbose is False


def test_help_does_not_load_torch():
    """`facegraph --help` builds every subcommand's parser; the library (and torch) load only in `run`."""
    code = "import sys; from facegraph.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_top_level_help_imports_no_subcommand_module(capsys):
    """`facegraph --help` lists every subcommand from its summary alone: no subcommand module, no numpy."""
    code = ("import sys\nfrom facegraph.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('facegraph.cli.') or m in ('numpy', 'torch')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().splitlines()[-1] == "[]", result.stdout + result.stderr
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_presets_lists_every_shipped_preset(capsys):
    assert main(["presets"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert {"cpu/resnet50", "cpu/aig-t0.5", "paper/iig-gender-age", "cpu/cosface"} <= set(listed)
    assert not any(name.endswith("/base") for name in listed)


def test_presets_show_prints_toml_that_train_reads_back(capsys, tmp_path):
    from facegraph.config import load_config

    assert main(["presets", "--show", "cpu/iig-gender"]) == 0
    shown = tmp_path / "shown.toml"
    shown.write_text(capsys.readouterr().out)
    assert load_config(shown).to_dict() == load_config("cpu/iig-gender").to_dict()


def test_flops_offers_every_architecture_the_models_build():
    """cli/flops.py names the architectures itself so that `--help` need not import torch: the copy must not drift."""
    from facegraph.cli.flops import ARCH_NAMES
    from facegraph.models.resnet import ARCHS

    assert ARCH_NAMES == tuple(ARCHS)
