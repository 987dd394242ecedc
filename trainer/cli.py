"""`python -m trainer ...`: the command line of the headless backend.

  run CONFIG.yaml [--job-dir DIR] [--resume] [KEY=VALUE ...]   train (SFT, full or LoRA)
  export JOB_DIR --merge [-o DIR]                               merge a LoRA adapter into its base
  export JOB_DIR [--merge] --quantize W [--group-size N] [--report]  a wint8/wint4/wint4/8 checkpoint
  export JOB_DIR [--merge] --zip DIR                            a zip of the output (or the export) to take away
  config validate FILE [KEY=VALUE ...]                          check a run config
  config import-erniekit FILE -o OUT.yaml                       convert an ERNIEKit YAML
  data check FILE [--format F] [--model M] [--json]             validate a dataset, token statistics
  model download OWNER/NAME [--hub H] [--revision R]            fetch a hub model into WORKDIR/models
  eval --model A [--model B ...] --data FILE [-o DIR]           answer a data set with each checkpoint, score it

Heavy imports (paddle) happen inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

USAGE = __doc__.split("\n\n")[1]


def _tee_to_log(log_path: Path) -> None:
    """Copy this process's stdout/stderr into train.log when nobody else does (a plain CLI run).

    Under the job launcher stdout already is train.log, and nothing is done.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if log_path.exists() and os.path.samefile(log_path, f"/proc/self/fd/{sys.stdout.fileno()}"):
            return
    except OSError:
        pass
    import signal
    import subprocess

    def outlive_stop() -> None:
        # a Stop (SIGTERM to the group, Ctrl-C in a terminal) must not end tee before the process has
        # said it stopped: its last lines would break the pipe; tee ends when the process closes it
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    tee = subprocess.Popen(["tee", "-a", str(log_path)], stdin=subprocess.PIPE, start_new_session=False,
                           preexec_fn=outlive_stop)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(tee.stdin.fileno(), 1)
    os.dup2(tee.stdin.fileno(), 2)


def default_job_dir() -> Path:
    from models.registry import default_workdir
    from trainer.jobs import new_job_id

    return default_workdir() / "jobs" / new_job_id()


def _build_builtin_model(name: str) -> None:
    """Build an embedded model here, before the ranks start: a rank that builds it saves under the
    launcher's world size, and paddleformers' save then waits on a process group not made yet."""
    from models.registry import MODELS, resolve_model_dir

    spec = MODELS.get(name)
    if spec is not None and spec.builtin:
        resolve_model_dir(spec.name)


def cmd_run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer run", description="Train from a run config.")
    parser.add_argument("config", help="run config YAML")
    parser.add_argument("--job-dir", help="job directory (default: a new WORKDIR/jobs/<job id>)")
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    parser.add_argument("--node-rank", type=int, default=0, metavar="N",
                        help="this machine's rank in a multi-node job: 0 on the first node, 1 .. "
                             "devices.nnodes-1 on the others (the studio shows each node's command)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override a config key")
    args = parser.parse_intermixed_args(argv)

    from trainer.config import ConfigError, command_preview, launch_prefix, load_config

    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if not 0 <= args.node_rank < cfg.devices.nnodes:
        print(f"--node-rank: expected 0 to {cfg.devices.nnodes - 1} (devices.nnodes is {cfg.devices.nnodes} "
              f"in {args.config}), got {args.node_rank}", file=sys.stderr)
        return 1
    job_dir = Path(args.job_dir) if args.job_dir else default_job_dir()
    if launch_prefix(cfg, job_dir) and "PADDLE_TRAINERS_NUM" not in os.environ:
        argv = command_preview(cfg, args.config, job_dir, resume=args.resume, overrides=args.overrides,
                               node_rank=args.node_rank)
        print(f"[studio] launching {cfg.devices.nproc * cfg.devices.nnodes} processes: {' '.join(argv)}", flush=True)
        _build_builtin_model(cfg.model.name_or_path)
        os.execv(argv[0], argv)
    from trainer.jobfiles import JobPaths

    _tee_to_log(JobPaths(job_dir).log)
    print(f"[studio] job directory: {job_dir}", flush=True)

    from trainer.train import run

    return run(cfg, job_dir, resume=args.resume)


def cmd_export(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer export",
                                     description="Write a self-contained checkpoint from a finished job.")
    parser.add_argument("job_dir", help="a completed job's directory")
    parser.add_argument("--merge", action="store_true", help="merge the LoRA adapter into the base model")
    parser.add_argument("-o", "--output", help="where to write (default: JOB_DIR/export)")
    parser.add_argument("--zip", metavar="DIR", help="write a zip archive into DIR, with the job's config.yaml and "
                        "the tokenizer: of the export with --merge, else of the job's output as it is")
    add_quantize_arguments(parser)
    args = parser.parse_args(argv)
    if args.zip and args.output and not args.merge:
        parser.error("-o names the export's directory; without --merge, --zip archives the output and exports nothing")

    from trainer.archive import ArchiveError, job_archive

    job_dir = Path(args.job_dir)
    out = None
    if args.quantize is not None or args.report or args.report_widths or args.group_size is not None:
        out = quantized_export(parser, args)
        if out is None:
            return 1
    elif args.merge or not args.zip:
        from trainer.export import ExportError, export

        try:
            out = export(job_dir, merge=args.merge, out_dir=Path(args.output) if args.output else None)
        except ExportError as exc:
            print(f"export failed: {exc}", file=sys.stderr)
            return 1
        print(f"exported to {out}")
        print_serve_command(out, job_dir)
    if args.zip:
        try:
            archive = job_archive(job_dir, Path(args.zip), export_dir=out)
        except ArchiveError as exc:
            print(f"archive failed: {exc}", file=sys.stderr)
            return 1
        print(f"archive written to {archive}")
    return 0


def add_quantize_arguments(parser: argparse.ArgumentParser) -> None:
    from models.quant_spec import GROUP_SIZES, WIDTHS

    parser.add_argument("--quantize", metavar="WIDTH", help=f"write a weight-only quantized checkpoint: "
                        f"{', '.join(WIDTHS)} (a LoRA job needs --merge; default directory JOB_DIR/export-WIDTH)")
    parser.add_argument("--group-size", metavar="N", help="scales per output channel (-1, the default) or per N "
                        f"input rows: {', '.join(map(str, GROUP_SIZES))}")
    parser.add_argument("--report", action="store_true", help="measure what quantizing costs on the job's eval "
                        "data (or a sample of its training data): perplexity, identical greedy answers, bytes, "
                        "load memory; printed and written as quant_report.json into the export")
    parser.add_argument("--report-widths", metavar="W[,W]", help="more widths to compare in the report")


def quantized_export(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path | None:
    """Run `export --quantize`; the directory written, or None after saying why not."""
    from models.quant_spec import QuantError, parse_spec

    if args.quantize is None:
        parser.error("--group-size, --report and --report-widths go with --quantize WIDTH")
    try:
        spec = parse_spec(args.quantize, -1 if args.group_size is None else args.group_size)
        extra = [parse_spec(width.strip(), spec.group_size).width
                 for width in (args.report_widths or "").split(",") if width.strip()]
    except QuantError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return None
    from trainer.export import ExportError
    from trainer.export_facts import report_text
    from trainer.quant_export import export_quantized
    from trainer.quant_report import ReportError

    try:
        out, report = export_quantized(Path(args.job_dir), spec, args.merge, args.output,
                                       extra if args.report or extra else None)
    except (ExportError, ReportError) as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return None
    if report is not None:
        print(report_text(report))
    print(f"exported to {out}")
    print_serve_command(out, Path(args.job_dir), spec.width, spec.group_size)
    return out


def print_serve_command(out: Path, job_dir: Path, width: str | None = None, group_size: int = -1) -> None:
    from trainer.export_facts import fastdeploy_command

    command = fastdeploy_command(out, job_dir, width, group_size)
    print("\n".join([*command.notes, f"  {command.text}"]))


def cmd_validate(argv: list[str]) -> int:
    """`python -m trainer config validate FILE [KEY=VALUE ...]`: print OK or every problem; exit 0 or 1."""
    parser = argparse.ArgumentParser(prog="python -m trainer config validate",
                                     description="Check a run config and print every problem.")
    parser.add_argument("file", help="run config YAML")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override a key, e.g. optim.learning_rate=3e-4")
    args = parser.parse_args(argv)

    from trainer.config import ConfigError, load_config

    try:
        load_config(args.file, args.overrides)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"OK: {args.file}")
    return 0


def cmd_config(argv: list[str]) -> int:
    if argv[:1] == ["validate"]:
        return cmd_validate(argv[1:])
    if argv[:1] == ["import-erniekit"]:
        from trainer.erniekit_import import main

        return main(argv[1:])
    print("usage: python -m trainer config {validate,import-erniekit} ...", file=sys.stderr)
    return 2


def cmd_data(argv: list[str]) -> int:
    if argv[:1] != ["check"]:
        print("usage: python -m trainer data check FILE [--format F] [--skip-invalid] [--json] "
              "[--model M [--max-seq-len N]]", file=sys.stderr)
        return 2
    from trainer.data.check import add_arguments, run

    parser = argparse.ArgumentParser(prog="python -m trainer data check",
                                     description="Validate a dataset file and print its statistics.")
    add_arguments(parser)
    parser.add_argument("--model", help="count tokens with this model's tokenizer and chat template "
                                        "(a built-in name or a checkpoint directory)")
    parser.add_argument("--max-seq-len", type=int, help="also count rows longer than this many tokens")
    args = parser.parse_args(argv[1:])
    token_length = None
    if args.model:
        from models.loader import load_tokenizer
        from models.checkpoints import ModelNotFound
        from models.registry import resolve_model_dir
        from trainer.data.tokenize import token_length as tokenizer_length
        from trainer.data.vl_encode import vl_token_length
        from trainer.vision import is_vision_model

        try:
            model_dir = resolve_model_dir(args.model)
            tokenizer = load_tokenizer(model_dir)
            if is_vision_model(model_dir):
                token_length = vl_token_length(tokenizer, args.min_pixels, args.max_pixels)
            else:
                token_length = tokenizer_length(tokenizer)
        except ModelNotFound as exc:
            return _data_usage_error(args, f"--model: {exc}")
        except Exception as exc:  # a broken tokenizer file fails in many ways; the report must still say why
            return _data_usage_error(args, f"--model: cannot load the tokenizer of {args.model} "
                                           f"({exc.__class__.__name__}: {exc})")
    return run(args, token_length=token_length, max_seq_len=args.max_seq_len)


def _data_usage_error(args: argparse.Namespace, message: str) -> int:
    """Report a data-check argument problem: on stderr, and as the JSON report `--json` promises."""
    print(message, file=sys.stderr)
    if args.json:
        print(json.dumps({"path": args.file, "ok": False, "error": message}, ensure_ascii=False))
    return 2


def cmd_model(argv: list[str]) -> int:
    """`python -m trainer model download REPO_ID ...`: models.hub does the download and the reporting."""
    from models.hub import HUBS, command, default_hub
    from models.registry import default_workdir

    if argv[:1] != ["download"]:
        print("usage: python -m trainer model download OWNER/NAME [--hub H] [--revision R] [--workdir DIR]",
              file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m trainer model download",
                                     description="Download a model from a hub into WORKDIR/models/OWNER/NAME "
                                                 "(resumable: run it again after an interruption).")
    parser.add_argument("repo_id", help="the hub's repo id, e.g. baidu/ERNIE-4.5-0.3B-Paddle")
    parser.add_argument("--hub", choices=list(HUBS), default=default_hub(),
                        help="where to download from (default: $DOWNLOAD_SOURCE or huggingface)")
    parser.add_argument("--revision", help="branch, tag or commit (default: the hub's main branch)")
    parser.add_argument("--workdir", help="studio directory (default: $ERNIE_STUDIO_HOME or ./workspace)")
    args = parser.parse_args(argv[1:])
    return command(args.repo_id, Path(args.workdir).expanduser().resolve() if args.workdir else default_workdir(),
                   args.hub, args.revision)


def cmd_eval(argv: list[str]) -> int:
    """`python -m trainer eval`: trainer.evaluate does the work; bad input is refused here, before any loading."""
    from trainer.eval_jobs import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, EvalError, eval_config, load_eval_config

    parser = argparse.ArgumentParser(prog="python -m trainer eval",
                                     description="Answer a data set with one or more checkpoints (greedy, in batches) "
                                                 "and score the answers against the references.")
    parser.add_argument("--model", action="append", metavar="M",
                        help="a built-in name, hub repo id, checkpoint or export directory, LoRA adapter, or job "
                             "directory (its output); repeat to compare")
    parser.add_argument("--data", metavar="FILE", help="JSONL/JSON/CSV/Parquet in a supported format, or a job "
                                                       "directory for the rows that job evaluated on")
    parser.add_argument("--format", default="auto", help="the data's format (default: detected)")
    parser.add_argument("--config", metavar="FILE", help="an eval config (kind: evaluation) instead of the options "
                                                         "above, as an evaluation job's config.yaml holds it")
    parser.add_argument("-o", "--output", metavar="DIR", help="evaluation directory, new or empty "
                                                              "(default: a new WORKDIR/evals/<id>)")
    parser.add_argument("--job-dir", metavar="DIR", help="the evaluation job's directory (the job store's launch)")
    parser.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS, metavar="N",
                        help=f"longest answer in tokens (default {DEFAULT_MAX_NEW_TOKENS})")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"prompts decoded together (default {DEFAULT_BATCH_SIZE})")
    args = parser.parse_args(argv)
    try:
        if args.config:
            if args.model or args.data:
                parser.error("--config holds the models and the data: give --model and --data without it")
            config = load_eval_config(args.config)
        elif not args.model or not args.data:
            parser.error("give --model (one or more) and --data, or --config")
        else:
            data = str(Path(args.data).expanduser().resolve())
            config = eval_config(args.model, data, args.format, args.max_new_tokens, args.batch_size)
    except EvalError as exc:
        parser.error(str(exc).replace("models:", "--model:", 1).replace("data:", "--data:", 1))
    if args.job_dir:
        out = Path(args.job_dir)
    elif args.output:
        out = Path(args.output)
    else:
        from models.registry import default_workdir
        from trainer.jobs import new_job_id

        out = default_workdir() / "evals" / new_job_id()
    if not args.job_dir and out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"-o: {out} exists and is not an empty directory; give a new one", file=sys.stderr)
        return 2
    from trainer.data.readers import DataError
    from trainer.evaluate import EvalPaths, read_rows, run_eval

    try:
        read = read_rows(config["data"], config["format"])  # refused before a directory or a model appears
    except (DataError, EvalError) as exc:
        print(f"--data: {exc}", file=sys.stderr)
        if args.job_dir:
            import time

            from trainer.jobfiles import FAILED, write_status

            write_status(out, state=FAILED, ended=time.time(), error=f"data: {exc}")
        return 2
    if not args.job_dir:  # under the job launcher stdout already is the job's log
        _tee_to_log(EvalPaths(out).log)
    print(f"[studio] evaluation directory: {out}", flush=True)
    return run_eval(config, read, out, log=lambda text: print(text, flush=True))


COMMANDS = {"run": cmd_run, "export": cmd_export, "config": cmd_config, "data": cmd_data, "model": cmd_model,
            "eval": cmd_eval}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m trainer COMMAND ...\n\n{USAGE}", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])
