"""The ``runcast`` command: ``serve`` the gateway, run the ``engine`` alone, print the SDL,
check workflow files and print their JSON Schema, ``documents check`` a trusted-documents
manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from runcast.errors import RuncastError
from runcast.settings import (
    Settings,
    default_engine_db_path,
    settings_reference,
    unknown_variables,
)

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runcast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_server_commands(commands)
    commands.add_parser("schema", help="print the GraphQL schema (SDL)")
    _add_documents_command(commands)
    commands.add_parser("settings", help="print every setting with its default and range")
    _add_workflows_command(commands)
    return parser


def _add_server_commands(commands: Commands) -> None:
    """``serve`` (the gateway) and ``engine`` (the embedded engine alone)."""
    serve = commands.add_parser("serve", help="start the GraphQL gateway")
    serve.add_argument(
        "--upstream",
        help="embedded (default), an AwaitStep base URL, or cloudflare://ACCOUNT_ID",
    )
    serve.add_argument(
        "--redis",
        metavar="URL",
        help="cluster mode: share the live layer and request budget with other replicas "
        "through this Redis (redis://HOST:PORT/DB); needs RUNCAST_CLUSTER_SECRET",
    )
    _add_engine_arguments(serve)
    engine = commands.add_parser(
        "engine", help="run the embedded engine alone as an AwaitStep-compatible REST server"
    )
    _add_engine_arguments(engine)
    engine.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help="require this bearer token (repeatable)",
    )


def _add_documents_command(commands: Commands) -> None:
    """``documents check``: a trusted-documents manifest against the schema."""
    documents = commands.add_parser(
        "documents", help="trusted documents (RUNCAST_TRUSTED_DOCUMENTS manifests)"
    )
    documents_commands = documents.add_subparsers(dest="documents_command", required=True)
    documents_check = documents_commands.add_parser(
        "check",
        help="check that every document of a manifest (Apollo's persisted query manifest, "
        "or GraphQL Codegen's persisted-documents.json) is valid against the schema",
    )
    documents_check.add_argument("file", type=Path, help="the manifest")


def _add_workflows_command(commands: Commands) -> None:
    """``workflows check`` (a folder of workflow files) and ``workflows schema``."""
    workflows = commands.add_parser("workflows", help="check workflow files, print their schema")
    actions = workflows.add_subparsers(dest="workflows_command", required=True)
    check = actions.add_parser(
        "check", help="validate every workflow file of a folder; exit 1 on any problem"
    )
    check.add_argument("folder", type=Path, help="the folder of workflow files")
    actions.add_parser("schema", help="print the JSON Schema of a workflow file (for editors)")


def _check_documents(file: Path) -> int:
    from runcast.schema import schema
    from runcast.trusted_documents import check_documents, load_trusted_documents

    documents = load_trusted_documents(file)
    problems = check_documents(documents, schema._schema)
    for problem in problems:
        sys.stdout.write(f"{problem}\n")
    count = len(documents.entries)
    if problems:
        sys.stdout.write(f"{file}: {len(problems)} problem(s) in {count} documents\n")
        return 1
    sys.stdout.write(f"{file}: {count} documents, all valid against the schema\n")
    return 0


def _add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workflows", type=Path, help="folder of workflow definitions")
    parser.add_argument("--db", type=Path, help="the engine's SQLite file")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8000)")
    parser.add_argument(
        "--strict",
        action="store_const",
        const=True,
        help="refuse to start if a workflow file has a problem or the folder has none",
    )


def _settings(args: argparse.Namespace) -> Settings:
    for warning in unknown_variables():
        sys.stderr.write(f"runcast: warning: {warning}\n")
    settings = Settings.from_env()
    changes: dict[str, object] = {}
    for arg, name in [
        ("upstream", "upstream"),
        ("workflows", "workflows_dir"),
        ("db", "db_path"),
        ("host", "host"),
        ("port", "port"),
        ("redis", "redis_url"),
        ("strict", "workflows_strict"),
    ]:
        value = getattr(args, arg, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "api_keys", None):
        changes["engine_api_keys"] = tuple(args.api_keys)
    return settings.replace(**changes).check()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a bad setting)."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        if args.command == "settings":
            sys.stdout.write(settings_reference() + "\n")
            return 0
        if args.command == "schema":
            from runcast.schema import print_schema

            sys.stdout.write(print_schema() + "\n")
            return 0
        if args.command == "documents":
            return _check_documents(args.file)
        if args.command == "workflows":
            return _workflows(args)
        if args.command == "engine":
            from runcast.engine.standalone import serve_engine

            return serve_engine(settings.engine_settings(default_db=default_engine_db_path()))
        from runcast._serve import serve
        from runcast.live.cluster import check_cluster_settings

        check_cluster_settings(settings)
        return serve(settings)
    except RuncastError as exc:
        sys.stderr.write(f"runcast: {exc.message}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def _workflows(args: argparse.Namespace) -> int:
    if args.workflows_command == "schema":
        from runcast.engine.format import shipped_json_schema

        sys.stdout.write(shipped_json_schema())
        return 0
    from runcast.engine.workflow_folder import check_folder

    folder: Path = args.folder
    if not folder.is_dir():
        sys.stderr.write(f"{folder}: is not a folder\n")
        return 1
    result, lines = check_folder(folder)
    for line in lines:
        sys.stderr.write(f"{line}\n")
    if lines:
        return 1
    sys.stdout.write(f"{folder}: {len(result.definitions)} workflows, no problems\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
