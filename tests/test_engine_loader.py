"""Loading workflow definitions: the public YAML/JSON format and its validation."""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from runcast.engine.definitions import (
    FailAction,
    HttpAction,
    PythonAction,
    RetryPolicy,
    ReturnAction,
    SleepNode,
    SleepUntilNode,
    StepNode,
    WaitForEventNode,
)
from runcast.engine.loader import (
    LoadProblem,
    LoadResult,
    demo_workflows_dir,
    load_workflows,
    parse_duration,
)
from runcast.models import WorkflowKind

TEST_WORKFLOWS = Path(__file__).parent / "workflows"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_files(folder: Path, files: dict[str, str]) -> LoadResult:
    """Write each ``name: text`` of ``files`` into ``folder``, then load the folder."""
    for name, text in files.items():
        write(folder, name, text)
    return load_workflows(folder)


def load_one(tmp_path: Path, text: str, *, max_nodes: int = 100) -> LoadResult:
    write(tmp_path, "wf.yaml", text)
    return load_workflows(tmp_path, max_nodes=max_nodes)


def only_problem(result: LoadResult) -> LoadProblem:
    assert result.definitions == {}
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


# --- the shipped sets -------------------------------------------------------------------------


def test_demo_set_loads_without_problems() -> None:
    """The demo set shipped in the package loads cleanly and is the default folder."""
    result = load_workflows(None)
    assert result.problems == []
    assert set(result.definitions) == {
        "order-approval",
        "flaky-charge",
        "always-fails",
        "long-sleep",
        "short-wait",
        "hello-worker",
    }
    assert demo_workflows_dir().is_dir()
    assert load_workflows(demo_workflows_dir()).definitions == result.definitions


def test_demo_order_approval_waits_for_user_approval() -> None:
    """The demo approval flow is step, sleep, wait for `user-approval`, step using the payload."""
    definition = load_workflows(None).definitions["order-approval"]
    assert [node.type for node in definition.nodes] == [
        "step",
        "sleep",
        "wait_for_event",
        "step",
    ]
    wait = definition.nodes[2]
    assert isinstance(wait, WaitForEventNode)
    assert wait.event_type == "user-approval"
    finish = definition.nodes[3]
    assert isinstance(finish, StepNode)
    assert isinstance(finish.action, ReturnAction)
    assert finish.action.value["approved"] == "approval.payload.approved"
    assert finish.action.value["by"] == "approval.payload.approvedBy"


def test_demo_script_has_url_and_no_nodes() -> None:
    """The demo script is a script with a URL and no nodes."""
    script = load_workflows(None).definitions["hello-worker"]
    assert script.kind is WorkflowKind.SCRIPT
    assert script.url is not None
    assert script.url.startswith("https://")
    assert script.nodes == ()
    assert script.describe().url == script.url


def test_test_workflows_load_without_problems() -> None:
    """The shared test workflows load cleanly."""
    result = load_workflows(TEST_WORKFLOWS)
    assert result.problems == []
    assert {
        "three-steps",
        "approval",
        "wait-timeout",
        "flaky",
        "always-fails",
        "sleepy",
        "slow-step",
        "script",
    } <= set(result.definitions)
    flaky = result.definitions["flaky"].nodes[0]
    assert isinstance(flaky, StepNode)
    assert flaky.retries == RetryPolicy(
        limit=3, delay=timedelta(milliseconds=100), backoff="constant"
    )
    assert flaky.action == FailAction(message="temporary failure", times=2)


# --- the format -------------------------------------------------------------------------------


def test_full_workflow_parses_every_node_type(tmp_path: Path) -> None:
    """Every node type and its options become the matching dataclass."""
    result = load_one(
        tmp_path,
        """
        id: all_nodes
        nodes:
          - step: reserve
            action:
              return: {orderId: input.orderId, reserved: "`true`", n: 3, tags: [input.a, null]}
            retries: {limit: 3, delay: 1s, backoff: exponential}
            timeout: 30s
          - sleep: cool_off
            duration: 500ms
          - sleep_until: deadline
            until: input.notBefore
          - sleep_until: fixed
            until: "2030-01-01T00:00:00Z"
          - wait_for_event: approval
            event_type: user-approval
            timeout: 1h
          - step: call
            action:
              http: {method: post, url: "https://example.invalid/x", headers: {X-A: b, X-N: 1},
                     json: {a: [1, 2]}}
          - step: boom
            action:
              fail: {message: nope, times: 2}
          - step: code
            action:
              python: package.module:function
        """,
    )
    assert result.problems == []
    definition = result.definitions["all_nodes"]
    assert definition.name == "all_nodes"
    assert definition.kind is WorkflowKind.WORKFLOW
    assert definition.source == tmp_path / "wf.yaml"
    assert definition.nodes == (
        StepNode(
            name="reserve",
            action=ReturnAction(
                value={
                    "orderId": "input.orderId",
                    "reserved": "`true`",
                    "n": 3,
                    "tags": ["input.a", None],
                }
            ),
            retries=RetryPolicy(limit=3, delay=timedelta(seconds=1), backoff="exponential"),
            timeout=timedelta(seconds=30),
        ),
        SleepNode(name="cool_off", duration=timedelta(milliseconds=500)),
        SleepUntilNode(name="deadline", until="input.notBefore"),
        SleepUntilNode(name="fixed", until="2030-01-01T00:00:00Z"),
        WaitForEventNode(name="approval", event_type="user-approval", timeout=timedelta(hours=1)),
        StepNode(
            name="call",
            action=HttpAction(
                method="POST",
                url="https://example.invalid/x",
                headers=(("X-A", "b"), ("X-N", "1")),
                json={"a": [1, 2]},
            ),
        ),
        StepNode(name="boom", action=FailAction(message="nope", times=2)),
        StepNode(name="code", action=PythonAction(target="package.module:function")),
    )
    assert definition.node("approval").type == "wait_for_event"


def test_json_file_loads_like_yaml(tmp_path: Path) -> None:
    """A .json file holding the same definition loads the same way."""
    (tmp_path / "wf.json").write_text(
        json.dumps(
            {
                "id": "from-json",
                "name": "From JSON",
                "nodes": [{"step": "one", "action": {"return": "input"}}],
            }
        )
    )
    result = load_workflows(tmp_path)
    assert result.problems == []
    definition = result.definitions["from-json"]
    assert definition.name == "From JSON"
    assert definition.nodes == (StepNode(name="one", action=ReturnAction(value="input")),)


def test_unquoted_yaml_timestamp_is_kept_as_iso_text(tmp_path: Path) -> None:
    """An unquoted YAML timestamp in `until` becomes ISO-8601 text, not a YAML datetime."""
    result = load_one(
        tmp_path,
        """
        id: until
        nodes:
          - sleep_until: later
            until: 2030-01-02T03:04:05Z
        """,
    )
    assert result.problems == []
    node = result.definitions["until"].nodes[0]
    assert isinstance(node, SleepUntilNode)
    assert node.until.startswith("2030-01-02T03:04:05")


def test_other_files_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    """Only .yaml, .yml and .json files are read; hidden files and other suffixes are not."""
    result = load_files(
        tmp_path,
        {
            "a.yml": "id: a\nnodes: [{sleep: s, duration: 1s}]\n",
            ".hidden.yaml": "not: [valid",
            "notes.txt": "not a workflow",
        },
    )
    assert result.problems == []
    assert set(result.definitions) == {"a"}


def test_script_definition(tmp_path: Path) -> None:
    """A script is id, name, kind script and a url, with no nodes."""
    result = load_one(tmp_path, "id: s\nname: S\nkind: script\nurl: https://w.example/\n")
    assert result.problems == []
    script = result.definitions["s"]
    assert (script.kind, script.url, script.nodes) == (
        WorkflowKind.SCRIPT,
        "https://w.example/",
        (),
    )


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("1.5s", timedelta(seconds=1.5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 10 s ", timedelta(seconds=10)),
        ("0s", timedelta()),
    ],
)
def test_parse_duration_accepts_units(text: object, expected: timedelta) -> None:
    """Durations are written 500ms, 30s, 5m, 2h, 1d, and parts combine."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "s", "5x", "5 minutes", "-1s", "1s2", "ms5", True, None])
def test_parse_duration_rejects_anything_else(text: object) -> None:
    """Anything else raises ValueError naming the text."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", [45, 0.25, "45", -3])
def test_parse_duration_refuses_a_number_without_unit(text: object) -> None:
    """A plain number is refused with the unit to add, instead of silently meaning seconds."""
    with pytest.raises(ValueError, match=r"has no unit: write -?[\d.]+s"):
        parse_duration(text)


# --- validation: every problem names the file, the node and what is wrong --------------------


@pytest.mark.parametrize(
    ("text", "node", "fragment"),
    [
        pytest.param(
            "name: x\nnodes: [{sleep: s, duration: 1s}]", None, "missing 'id'", id="no-id"
        ),
        pytest.param(
            "id: bad id!\nnodes: [{sleep: s, duration: 1s}]", None, "invalid", id="bad-id"
        ),
        pytest.param("id: 7\nnodes: [{sleep: s, duration: 1s}]", None, "bad 'id'", id="id-number"),
        pytest.param("id: x", None, "at least one node", id="no-nodes"),
        pytest.param("id: x\nnodes: []", None, "at least one node", id="empty-nodes"),
        pytest.param("id: x\nnodes: {a: 1}", None, "must be a list", id="nodes-not-list"),
        pytest.param(
            "id: x\nkind: job\nnodes: [{sleep: s, duration: 1s}]", None, "'kind'", id="bad-kind"
        ),
        pytest.param(
            "id: x\nnodez: []\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "unknown key 'nodez'",
            id="unknown-top-key",
        ),
        pytest.param("id: x\nkind: script", None, "needs a 'url'", id="script-no-url"),
        pytest.param(
            "id: x\nurl: https://x\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "only a script has a 'url'",
            id="workflow-with-url",
        ),
        pytest.param(
            "id: x\nname: ''\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "bad 'name': string should have at least 1 character",
            id="empty-name",
        ),
        pytest.param(
            "id: x\nkind: script\nurl: ftp://x", None, "http:// or https://", id="script-bad-url"
        ),
        pytest.param(
            "id: x\nkind: script\nurl: https://x\nnodes: [{sleep: s, duration: 1s}]",
            None,
            "a script has no 'nodes'",
            id="script-with-nodes",
        ),
        pytest.param(
            "id: x\nnodes: [{jump: 5}]", "#1", "unknown node type 'jump'", id="unknown-type"
        ),
        pytest.param(
            "id: x\nnodes: [{jump: j1}]",
            "j1",
            "unknown node type 'jump'",
            id="unknown-type-named",
        ),
        pytest.param(
            "id: x\nnodes: [{duration: 1s, sleep: nap}]",
            "nap",
            "the node type must be the first key: put 'sleep' before 'duration'",
            id="type-not-first",
        ),
        pytest.param("id: x\nnodes: [just-text]", "#1", "must be a mapping", id="node-not-map"),
        pytest.param(
            "id: x\nnodes: [{step: a b}]", "a b", "is invalid: use letters", id="bad-node-name"
        ),
        pytest.param(
            "id: x\nnodes: [{sleep: input, duration: 1s}]", "input", "reserved", id="input-name"
        ),
        pytest.param(
            "id: x\nnodes: [{sleep: a, duration: 1s}, {sleep: a, duration: 2s}]",
            "a",
            "duplicate node name",
            id="duplicate-node",
        ),
        pytest.param(
            "id: x\nnodes: [{sleep: a, duration: 1s, color: red}]",
            "a",
            "unknown key 'color'",
            id="unknown-node-key",
        ),
        pytest.param("id: x\nnodes: [{step: a}]", "a", "needs an 'action'", id="no-action"),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {retrun: input}}]",
            "a",
            "unknown action 'retrun'",
            id="unknown-action",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input, fail: x}}]",
            "a",
            "one key",
            id="two-actions",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: nobody.x}}]",
            "a",
            "unknown node 'nobody'",
            id="unknown-reference",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: {k: [later.x]}}}, "
            "{step: later, action: {return: input}}]",
            "a",
            "node 'later', which does not come before",
            id="later-reference",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: a.x}}]",
            "a",
            "node 'a', which does not come before",
            id="self-reference",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: 'length(ghost)'}}]",
            "a",
            "unknown node 'ghost'",
            id="reference-in-function",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: hello}}]",
            "a",
            "a literal string is written `hello` in backticks",
            id="bare-word-hint",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: 'input.['}}]",
            "a",
            "not a valid JMESPath expression",
            id="bad-expression",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: {1: input}}}]",
            "a",
            "keys must be strings",
            id="non-string-key",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: [2030-01-01]}}]",
            "a",
            "not JSON",
            id="non-json-literal",
        ),
        pytest.param(
            "id: x\nnodes: [{sleep_until: u, until: ghost.when}]",
            "u",
            "unknown node 'ghost'",
            id="until-reference",
        ),
        pytest.param(
            "id: x\nnodes: [{sleep_until: u, until: 5}]", "u", "ISO-8601", id="until-number"
        ),
        pytest.param("id: x\nnodes: [{sleep: s}]", "s", "missing 'duration'", id="no-duration"),
        pytest.param(
            "id: x\nnodes: [{sleep: s, duration: soon}]", "s", "bad 'duration'", id="bad-duration"
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, timeout: 0s}]",
            "a",
            "longer than zero",
            id="zero-timeout",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, timeout: 3 weeks}]",
            "a",
            "bad 'timeout'",
            id="bad-timeout",
        ),
        pytest.param(
            "id: x\nnodes: [{wait_for_event: w}]", "w", "'event_type'", id="no-event-type"
        ),
        pytest.param(
            "id: x\nnodes: [{wait_for_event: w, event_type: e, timeout: -1s}]",
            "w",
            "bad 'timeout'",
            id="bad-wait-timeout",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, retries: 3}]",
            "a",
            "bad 'retries'",
            id="retries-not-map",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, retries: {limit: -1}}]",
            "a",
            "bad 'retries.limit': input should be greater than or equal to 0",
            id="retries-negative",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, retries: {limit: 1.5}}]",
            "a",
            "bad 'retries.limit': input should be a valid integer",
            id="retries-fraction",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, retries: {backoff: random}}]",
            "a",
            "bad 'retries.backoff': input should be 'constant', 'linear' or 'exponential'",
            id="retries-backoff",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, retries: {delay: later}}]",
            "a",
            "bad 'retries.delay'",
            id="retries-delay",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {return: input}, retries: {tries: 2}}]",
            "a",
            "unknown key 'tries'",
            id="retries-unknown-key",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {http: {url: 'file:///etc/passwd'}}}]",
            "a",
            "bad 'http.url'",
            id="http-url",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {http: {method: FETCH, url: 'https://x'}}}]",
            "a",
            "bad 'http.method'",
            id="http-method",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {http: {url: 'https://x', headers: [a]}}}]",
            "a",
            "bad 'http.headers': must be a mapping",
            id="http-headers",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {http: https://x}}]",
            "a",
            "bad 'http': must be a mapping",
            id="http-not-map",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {fail: {times: 2}}}]",
            "a",
            "missing 'fail.message'",
            id="fail-no-message",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {fail: {message: m, times: 0}}}]",
            "a",
            "bad 'fail.times'",
            id="fail-times",
        ),
        pytest.param(
            "id: x\nnodes: [{step: a, action: {python: not a target}}]",
            "a",
            "module.path:function",
            id="python-target",
        ),
    ],
)
def test_validation_problem_names_file_node_and_problem(
    tmp_path: Path, text: str, node: str | None, fragment: str
) -> None:
    """Each invalid definition is skipped with a problem naming the file, node and problem."""
    result = load_one(tmp_path, text)
    assert result.definitions == {}
    assert result.problems, "expected a problem"
    assert any(
        problem.file == tmp_path / "wf.yaml"
        and problem.node == node
        and fragment in problem.message
        for problem in result.problems
    ), result.problems


def test_more_nodes_than_the_limit(tmp_path: Path) -> None:
    """A workflow with more nodes than max_nodes is refused with the limit in the message."""
    nodes = "\n".join(f"  - sleep: s{i}\n    duration: 1s" for i in range(4))
    assert load_one(tmp_path, f"id: x\nnodes:\n{nodes}\n", max_nodes=4).problems == []
    problem = only_problem(load_one(tmp_path, f"id: x\nnodes:\n{nodes}\n", max_nodes=3))
    assert problem.message == "4 nodes is more than the limit of 3"


def test_default_node_limit_is_100(tmp_path: Path) -> None:
    """By default a workflow may have 100 nodes but not 101."""
    nodes = [{"sleep": f"s{i}", "duration": "1s"} for i in range(101)]
    longer = {"wf.json": json.dumps({"id": "big", "nodes": nodes})}
    assert "limit of 100" in only_problem(load_files(tmp_path, longer)).message
    shorter = {"wf.json": json.dumps({"id": "big", "nodes": nodes[:100]})}
    assert load_files(tmp_path, shorter).problems == []


def test_every_problem_of_a_file_is_reported(tmp_path: Path) -> None:
    """A file with several mistakes reports all of them, not only the first."""
    result = load_one(
        tmp_path,
        """
        id: x
        nodes:
          - step: a
            action: {return: ghost}
          - sleep: b
            duration: never
        """,
    )
    assert {(problem.node, problem.message.split(":")[0]) for problem in result.problems} == {
        ("a", "'return'"),
        ("b", "bad 'duration'"),
    }


@pytest.mark.parametrize(
    "expression",
    [
        "input",
        "@",
        '`"literal"`',
        "`plain words`",
        "'raw string'",
        "first.items[*].price",
        "first.items[?price > `3`].name",
        "sort_by(first.items, &price)[0].name",
        "first | nested.deeper",
        "first.a || input.b",
        "{a: first.a, b: [input.x, `1`]}",
        "[0]",
    ],
)
def test_references_to_input_and_earlier_nodes_are_accepted(
    tmp_path: Path, expression: str
) -> None:
    """Expressions may read `input` and earlier nodes; names inside projections are not nodes."""
    result = load_one(
        tmp_path,
        f"""
        id: refs
        nodes:
          - step: first
            action: {{return: input}}
          - step: second
            action:
              return: {json.dumps(expression)}
        """,
    )
    assert result.problems == []


def test_yaml_syntax_error_is_reported(tmp_path: Path) -> None:
    """A file that is not valid YAML is reported as such."""
    problem = only_problem(load_one(tmp_path, "id: x\nnodes: [unclosed\n"))
    assert problem.node is None
    assert problem.message.startswith("not valid YAML")


def test_json_syntax_error_is_reported(tmp_path: Path) -> None:
    """A .json file that is not valid JSON is reported as such."""
    problem = only_problem(load_files(tmp_path, {"wf.json": "{'id': 'x'}"}))
    assert problem.file == tmp_path / "wf.json"
    assert problem.message.startswith("not valid JSON")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_file_without_a_mapping_is_reported(tmp_path: Path, text: str) -> None:
    """An empty file, a list or a scalar is not a definition."""
    problem = only_problem(load_one(tmp_path, text))
    assert "one mapping" in problem.message


def test_two_documents_in_one_file_are_reported(tmp_path: Path) -> None:
    """One definition per file: a second YAML document is an error."""
    problem = only_problem(
        load_one(
            tmp_path,
            "id: a\nnodes: [{sleep: s, duration: 1s}]\n---\n"
            "id: b\nnodes: [{sleep: s, duration: 1s}]\n",
        )
    )
    assert "not valid YAML" in problem.message


def test_undecodable_file_is_reported(tmp_path: Path) -> None:
    """A file that is not UTF-8 is reported, not raised."""
    (tmp_path / "wf.yaml").write_bytes(b"id: \xff\xfe\n")
    problem = only_problem(load_workflows(tmp_path))
    assert problem.message.startswith("cannot read the file")


def test_bad_file_never_takes_the_others_down(tmp_path: Path) -> None:
    """A bad file is reported and skipped; the good files around it still load."""
    result = load_files(
        tmp_path,
        {
            "a.yaml": "id: a\nnodes: [{sleep: s, duration: 1s}]\n",
            "b.yaml": "id: b\nnodes: [{step: x, action: {teleport: 1}}]\n",
            "c.yaml": "id: c\nnodes: [{sleep: s, duration: 2s}]\n",
        },
    )
    assert set(result.definitions) == {"a", "c"}
    assert [(p.file.name, p.node) for p in result.problems] == [("b.yaml", "x")]


def test_duplicate_workflow_ids_across_files(tmp_path: Path) -> None:
    """The second file with an id already loaded is reported, naming the first file."""
    result = load_files(
        tmp_path,
        {
            "1-first.yaml": "id: same\nnodes: [{sleep: s, duration: 1s}]\n",
            "2-second.yml": "id: same\nnodes: [{sleep: t, duration: 2s}]\n",
        },
    )
    assert result.definitions["same"].source == tmp_path / "1-first.yaml"
    problem = result.problems[0]
    assert len(result.problems) == 1
    assert problem.file == tmp_path / "2-second.yml"
    assert problem.node is None
    assert "'same' is already used by" in problem.message
    assert "1-first.yaml" in problem.message


def test_missing_folder_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    """Loading from a folder that does not exist reports it and loads nothing."""
    problem = only_problem(load_workflows(tmp_path / "nowhere"))
    assert problem.file == tmp_path / "nowhere"
    assert "not a folder" in problem.message


def test_problem_text_names_file_and_node(tmp_path: Path) -> None:
    """A problem reads as `file: node 'name': message` (or `file: message`)."""
    assert str(LoadProblem(Path("w/a.yaml"), "finish", "oops")) == "w/a.yaml: node 'finish': oops"
    assert str(LoadProblem(Path("w/a.yaml"), None, "oops")) == "w/a.yaml: oops"
