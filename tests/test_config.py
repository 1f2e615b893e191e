"""Tests for exporter.config: parsing, defaults, every error class, secrets and durations."""

from __future__ import annotations

import copy
import dataclasses
import re
import ssl
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from exporter.config import (
    AuthConfig,
    Config,
    ConfigError,
    DiscoveryConfig,
    PollingConfig,
    ProjectConfig,
    Secret,
    TlsConfig,
    iam_endpoint_for,
    load_config,
    modelarts_endpoint_for,
    parse_config,
    parse_duration,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ID = "0123456789abcdef0123456789abcdef"
SERVICE_ID = "195c1f2d-136d-40af-a0f3-db5717d2634a"
SECRET = "s3cr3t-V4lue-that-must-never-leak"

MINIMAL = f"""
auth:
  method: token
  token: abc
projects:
  - project_id: {PROJECT_ID}
    region: cn-north-4
    services: [{SERVICE_ID}]
"""


def write(directory: Path, text: str, name: str = "config.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(directory: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(directory, text), env={} if env is None else env)


def problems(directory: Path, text: str, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load(directory, text, env)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


def with_auth(auth: str, projects: str | None = None) -> str:
    """A config with the given auth block (indented two spaces) and one valid project."""
    if projects is None:
        projects = f"""
  - project_id: {PROJECT_ID}
    region: cn-north-4
    services: [{SERVICE_ID}]"""
    return f"auth:\n{textwrap.indent(textwrap.dedent(auth).strip(), '  ')}\nprojects:{projects}\n"


def with_project(project: str, auth: str = "method: token\ntoken: abc") -> str:
    """A config with a token auth block and one project given as YAML mapping lines."""
    body = textwrap.indent(textwrap.dedent(project).strip(), "    ")
    return with_auth(auth, "\n  - " + body.lstrip())


def with_polling(polling: str) -> str:
    return MINIMAL + "polling:\n" + textwrap.indent(textwrap.dedent(polling).strip(), "  ") + "\n"


# --- valid configurations ------------------------------------------------------------------


def test_full_config_with_every_key(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text("tok-from-file\n", encoding="utf-8")
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = load(
        tmp_path,
        f"""
        auth:
          method: token
          token_file: secrets/token
        projects:
          - project_id: {PROJECT_ID}
            region: cn-north-4
            endpoint: https://modelarts.example.test:8443/base/
            workspace_id: "ws1"
            services:
              - {SERVICE_ID}
            discovery:
              enabled: true
              infer_types: [real-time, edge]
              name_pattern: "^prod-"
              statuses: [running, failed]
          - project_id: second_project-2
            region: ap-southeast-3
            workspace_id: 0
            discovery: {{enabled: true}}
        polling:
          interval: 15s
          logs_interval: 1h
          discovery_interval: 2m
          timeout: 500ms
          max_concurrency: 4
          max_requests_per_second: 2.5
          retries: 0
          stale_after: 1m30s
          events_lookback: 20m
        tls:
          ca_file: ca.pem
        """,
    )
    assert config == Config(
        auth=AuthConfig(method="token", token=Secret("tok-from-file")),
        projects=(
            ProjectConfig(
                project_id=PROJECT_ID,
                region="cn-north-4",
                endpoint="https://modelarts.example.test:8443/base",
                workspace_id="ws1",
                services=(SERVICE_ID,),
                discovery=DiscoveryConfig(
                    enabled=True,
                    infer_types=("real-time", "edge"),
                    name_pattern=re.compile("^prod-"),
                    statuses=("running", "failed"),
                ),
            ),
            ProjectConfig(
                project_id="second_project-2",
                region="ap-southeast-3",
                endpoint="https://modelarts.ap-southeast-3.myhuaweicloud.com",
                workspace_id="0",
                services=(),
                discovery=DiscoveryConfig(enabled=True),
            ),
        ),
        polling=PollingConfig(
            interval=15.0,
            logs_interval=3600.0,
            discovery_interval=120.0,
            timeout=0.5,
            max_concurrency=4,
            max_requests_per_second=2.5,
            retries=0,
            stale_after=90.0,
            events_lookback=1200.0,
        ),
        tls=TlsConfig(ca_file=str(ca)),
    )
    assert config.auth.token is not None
    assert config.auth.token.reveal() == "tok-from-file"
    pattern = config.projects[0].discovery.name_pattern
    assert pattern is not None
    assert pattern.search("prod-api")
    assert not pattern.search("dev-api")


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.polling == PollingConfig(
        interval=30.0,
        logs_interval=600.0,
        discovery_interval=300.0,
        timeout=10.0,
        max_concurrency=8,
        max_requests_per_second=10.0,
        retries=3,
        stale_after=300.0,
        events_lookback=600.0,
    )
    assert config.tls == TlsConfig(ca_file=None)
    (project,) = config.projects
    assert project.endpoint == "https://modelarts.cn-north-4.myhuaweicloud.com"
    assert project.workspace_id is None
    assert project.services == (SERVICE_ID,)
    assert project.discovery == DiscoveryConfig(
        enabled=False, infer_types=(), name_pattern=None, statuses=()
    )
    assert config.auth == AuthConfig(method="token", token=Secret("abc"))
    assert config.auth.iam_endpoint is None


def test_empty_sections_and_null_values_mean_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        MINIMAL.replace("services:", "workspace_id:\n    discovery:\n    services:")
        + 'polling:\n  interval:\ntls:\n  ca_file: ""\n',
    )
    assert config.polling == PollingConfig()
    assert config.tls.ca_file is None
    assert config.projects[0].workspace_id is None
    assert config.projects[0].discovery == DiscoveryConfig()


def test_numbers_accepted_as_durations_in_seconds(tmp_path: Path) -> None:
    config = load(tmp_path, with_polling("interval: 45\ntimeout: 2.5\nstale_after: 45"))
    assert (config.polling.interval, config.polling.timeout) == (45.0, 2.5)
    assert config.polling.stale_after == 45.0


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.polling = PollingConfig()  # type: ignore[misc]
    assert hash(config.projects[0]) == hash(load(tmp_path, MINIMAL).projects[0])


def test_password_method(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n", encoding="utf-8")
    config = load(
        tmp_path,
        with_auth(
            """
            method: password
            domain_name: my-account
            user_name: ${USER_NAME}
            password_file: pw
            """
        ),
        env={"USER_NAME": "iam-user"},
    )
    assert config.auth == AuthConfig(
        method="password",
        domain_name="my-account",
        user_name="iam-user",
        password=Secret(SECRET),
    )
    assert iam_endpoint_for(config.projects[0].region) == "https://iam.cn-north-4.myhuaweicloud.com"


def test_aksk_method_with_security_token(tmp_path: Path) -> None:
    (tmp_path / "sk").write_text("secret-key\r\n", encoding="utf-8")
    config = load(
        tmp_path,
        with_auth(
            """
            method: aksk
            access_key: ${AK}
            secret_key_file: sk
            security_token: ${STS}
            """
        ),
        env={"AK": "access-key", "STS": "temporary"},
    )
    assert config.auth == AuthConfig(
        method="aksk",
        access_key=Secret("access-key"),
        secret_key=Secret("secret-key"),
        security_token=Secret("temporary"),
    )


def test_aksk_security_token_is_optional(tmp_path: Path) -> None:
    config = load(tmp_path, with_auth("method: aksk\naccess_key: a\nsecret_key: b"))
    assert config.auth.security_token is None


def test_endpoint_without_region_when_no_iam_needed(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        with_project(
            "project_id: p1\nendpoint: http://127.0.0.1:8080/\nservices: [s1]",
            auth="method: aksk\naccess_key: a\nsecret_key: b",
        ),
    )
    assert config.projects[0].endpoint == "http://127.0.0.1:8080"
    assert config.projects[0].region == ""

    config = load(
        tmp_path,
        with_project(
            "project_id: p1\nendpoint: http://127.0.0.1:8080\nservices: [s1]",
            auth="method: password\niam_endpoint: http://127.0.0.1:9090/\n"
            "domain_name: d\nuser_name: u\npassword: pw",
        ),
    )
    assert config.auth.iam_endpoint == "http://127.0.0.1:9090"


def test_password_method_without_iam_endpoint_needs_region(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        with_project(
            "project_id: p1\nendpoint: http://127.0.0.1:8080\nservices: [s1]",
            auth="method: password\ndomain_name: d\nuser_name: u\npassword: pw",
        ),
    ) == ("projects[0].region: required (the IAM endpoint is derived from it)",)


def test_env_substitution_in_any_string(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        with_project(
            """
            project_id: ${PID}
            region: ${REGION}
            endpoint: ${SCHEME}://${HOST}
            workspace_id: ${WS}
            services: ["${SVC}", "svc-2"]
            discovery:
              enabled: ${ENABLED}
              name_pattern: "^${PREFIX}-.*$$"
            """,
        )
        + "polling:\n  interval: ${INTERVAL}\n  max_concurrency: ${CONC}\n"
        "  max_requests_per_second: ${RATE}\n",
        env={
            "PID": "p1",
            "REGION": "eu-west-101",
            "SCHEME": "https",
            "HOST": "api.example.test",
            "WS": "7",
            "SVC": "svc-1",
            "ENABLED": "true",
            "PREFIX": "prod",
            "INTERVAL": "1m",
            "CONC": "16",
            "RATE": "0.5",
        },
    )
    (project,) = config.projects
    assert project.project_id == "p1"
    assert project.region == "eu-west-101"
    assert project.endpoint == "https://api.example.test"
    assert project.workspace_id == "7"
    assert project.services == ("svc-1", "svc-2")
    assert project.discovery.enabled is True
    assert project.discovery.name_pattern == re.compile("^prod-.*$")
    assert config.polling.interval == 60.0
    assert config.polling.max_concurrency == 16
    assert config.polling.max_requests_per_second == 0.5


def test_lone_dollar_is_literal_and_empty_variable_substitutes_empty(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL.replace("token: abc", "token: a$b${EMPTY}c$"), {"EMPTY": ""})
    assert config.auth.token == Secret("a$bc$")


def test_env_defaults_to_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELARTS_TEST_TOKEN", "from-os-environ")
    config = load_config(write(tmp_path, MINIMAL.replace("abc", "${MODELARTS_TEST_TOKEN}")))
    assert config.auth.token == Secret("from-os-environ")


def test_parse_config_takes_loaded_data(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("t\n", encoding="utf-8")
    data = {
        "auth": {"method": "token", "token_file": "tok"},
        "projects": [{"project_id": "p", "region": "r1", "services": ["s"]}],
    }
    config = parse_config(data, env={}, base_dir=tmp_path)
    assert config.auth.token == Secret("t")
    assert config.projects[0].endpoint == modelarts_endpoint_for("r1")


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "token").write_text("near-config\n", encoding="utf-8")
    trustme.CA().cert_pem.write_to_path(str(config_dir / "ca.pem"))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "token").write_text("near-cwd\n", encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    text = MINIMAL.replace("token: abc", "token_file: token") + "tls:\n  ca_file: ca.pem\n"
    write(config_dir, text)
    config = load_config(Path("..") / "etc" / "config.yaml", env={})
    assert config.auth.token == Secret("near-config")
    assert config.tls.ca_file == str(config_dir / "ca.pem")
    assert Path(config.tls.ca_file).is_absolute()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("value\n", "value"),
        ("value\n\n\n", "value"),
        ("value\r\n", "value"),
        ("value", "value"),
        ("two\nlines\n", "two\nlines"),
        ("  padded  \n", "  padded  "),
    ],
)
def test_secret_file_trailing_newlines_stripped(
    tmp_path: Path, content: str, expected: str
) -> None:
    (tmp_path / "token").write_bytes(content.encode())
    config = load(tmp_path, MINIMAL.replace("token: abc", "token_file: token"))
    assert config.auth.token is not None
    assert config.auth.token.reveal() == expected


def test_example_config_is_valid() -> None:
    example = REPO_ROOT / "config.example.yaml"
    config = load_config(example, env={"MODELARTS_TOKEN": "example-token"})
    assert config.auth.token == Secret("example-token")
    (project,) = config.projects
    assert len(project.services) == 1
    assert project.discovery.enabled
    with pytest.raises(ConfigError) as caught:
        load_config(example, env={})
    assert caught.value.problems == ("auth.token: environment variable MODELARTS_TOKEN is not set",)


def test_example_config_shows_every_key() -> None:
    text = (REPO_ROOT / "config.example.yaml").read_text(encoding="utf-8")
    keys = [field.name for cls in (PollingConfig, TlsConfig) for field in dataclasses.fields(cls)]
    keys += [f.name for f in dataclasses.fields(ProjectConfig)]
    keys += [f.name for f in dataclasses.fields(DiscoveryConfig)]
    keys += [f.name for f in dataclasses.fields(AuthConfig)]
    keys += [
        f"{name}_file"
        for name in ("token", "password", "access_key", "secret_key", "security_token")
    ]
    for key in keys:
        assert re.search(rf"^\s*#?\s*(- )?{key}:", text, re.MULTILINE), key


# --- errors, one class at a time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            with_project("region: cn-north-4\nservices: [s]"),
            "projects[0].project_id: required",
            id="missing-project-id",
        ),
        pytest.param(
            with_project('project_id: "a/b"\nregion: r\nservices: [s]'),
            'projects[0].project_id: must contain only letters, digits, "_" and "-"',
            id="bad-project-id",
        ),
        pytest.param(
            with_project('project_id: ""\nregion: r\nservices: [s]'),
            "projects[0].project_id: must not be empty",
            id="empty-project-id",
        ),
        pytest.param(
            with_project("project_id: 12345\nregion: r\nservices: [s]"),
            "projects[0].project_id: expected a string, got integer (quote it)",
            id="numeric-project-id",
        ),
        pytest.param(
            with_project("project_id: p\nservices: [s]"),
            "projects[0].region: required",
            id="missing-region",
        ),
        pytest.param(
            with_project("project_id: p\nregion: CN_North\nservices: [s]"),
            "projects[0].region: must be a region id like cn-north-4",
            id="bad-region",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nendpoint: ftp://host\nservices: [s]"),
            "projects[0].endpoint: must be an http:// or https:// URL",
            id="bad-endpoint-scheme",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nendpoint: https://h/?a=1\nservices: [s]"),
            "projects[0].endpoint: must not contain a query or fragment",
            id="endpoint-query",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nworkspace_id: [1]\nservices: [s]"),
            "projects[0].workspace_id: expected a string or integer, got list",
            id="workspace-type",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: s"),
            "projects[0].services: expected a list of strings, got string",
            id="services-not-list",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: [s, s]"),
            "projects[0].services[1]: duplicate service id",
            id="duplicate-service",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: ['a b']"),
            'projects[0].services[0]: must be a service id (letters, digits, "_", "-")',
            id="bad-service-id",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r"),
            "projects[0]: no services and discovery disabled",
            id="no-services-no-discovery",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: []\ndiscovery: {enabled: false}"),
            "projects[0]: no services and discovery disabled",
            id="empty-services-discovery-off",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\ndiscovery: {enabled: 'true'}"),
            "projects[0].discovery.enabled: expected a boolean (true or false), got string",
            id="quoted-boolean",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\ndiscovery: {enabled: 1}"),
            "projects[0].discovery.enabled: expected a boolean (true or false), got integer",
            id="integer-boolean",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\ndiscovery: {enabled: true, bogus: 1}"),
            "projects[0].discovery.bogus: unknown key",
            id="unknown-discovery-key",
        ),
        pytest.param(
            with_project(
                "project_id: p\nregion: r\ndiscovery: {enabled: true, infer_types: [online]}"
            ),
            'projects[0].discovery.infer_types[0]: unknown value "online" '
            "(one of real-time, batch, edge, async-real-time)",
            id="unknown-infer-type",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\ndiscovery: {enabled: true, statuses: [up]}"),
            'projects[0].discovery.statuses[0]: unknown value "up" (one of running, deploying, '
            "concerning, failed, stopped, finished, stopping, deleting, pending, waiting, init, "
            "upgrading, error, interrupting)",
            id="unknown-status",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: [s]\ngenerations: [v3]"),
            'projects[0].generations[0]: unknown value "v3" (one of v1, v2)',
            id="unknown-generation",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: [s]\ngenerations: []"),
            "projects[0].generations: must name at least one generation",
            id="no-generation",
        ),
        pytest.param(
            with_project("project_id: p\nregion: r\nservices: [s]\nbogus: 1"),
            "projects[0].bogus: unknown key",
            id="unknown-project-key",
        ),
        pytest.param(
            with_auth("method: token\ntoken: t\nbogus: x"),
            "auth.bogus: unknown key",
            id="unknown-auth-key",
        ),
        pytest.param(
            with_auth("method: token\ntokn: t\ntoken: t"),
            "auth.tokn: unknown key (did you mean token?)",
            id="unknown-key-suggestion",
        ),
        pytest.param(
            MINIMAL + "bogus: 1\n",
            "bogus: unknown key",
            id="unknown-top-key",
        ),
        pytest.param(
            with_auth("token: t"),
            "auth.method: required",
            id="missing-method",
        ),
        pytest.param(
            with_auth("method: oauth"),
            "auth.method: must be one of token, password, aksk",
            id="bad-method",
        ),
        pytest.param(
            with_auth("method: token"),
            "auth.token: required (or token_file) for method token",
            id="token-missing",
        ),
        pytest.param(
            with_auth("method: aksk\naccess_key: a\nsecret_key: b\ntoken: t"),
            "auth.token: not allowed with method aksk",
            id="token-with-aksk",
        ),
        pytest.param(
            with_auth("method: token\ntoken: t\npassword_file: /nonexistent"),
            "auth.password_file: not allowed with method token",
            id="password-file-with-token",
        ),
        pytest.param(
            with_auth("method: aksk\naccess_key: a\nsecret_key: b\niam_endpoint: https://iam"),
            "auth.iam_endpoint: not allowed with method aksk",
            id="iam-endpoint-with-aksk",
        ),
        pytest.param(
            with_auth("method: password\ndomain_name: d\npassword: p"),
            "auth.user_name: required",
            id="password-missing-user",
        ),
        pytest.param(
            with_auth("method: aksk\naccess_key: a"),
            "auth.secret_key: required (or secret_key_file) for method aksk",
            id="aksk-missing-secret-key",
        ),
        pytest.param(
            with_auth(
                "method: password\ndomain_name: d\nuser_name: u\npassword: p\n"
                "iam_endpoint: iam.example"
            ),
            "auth.iam_endpoint: must be an http:// or https:// URL",
            id="bad-iam-endpoint",
        ),
        pytest.param(
            with_auth("method: token\ntoken: t\ntoken_file: f"),
            "auth.token: set either token or token_file, not both",
            id="both-secret-and-file",
        ),
        pytest.param(
            with_auth("method: token\ntoken_file: does-not-exist"),
            'auth.token_file: cannot read "does-not-exist": No such file or directory',
            id="missing-secret-file",
        ),
        pytest.param(
            with_auth("method: token\ntoken: ${MODELARTS_TOKEN}"),
            "auth.token: environment variable MODELARTS_TOKEN is not set",
            id="unset-env-var",
        ),
        pytest.param(
            with_auth("method: token\ntoken: ${NOT CLOSED"),
            'auth.token: unterminated "${" (write "$$" for a literal "$")',
            id="unterminated-reference",
        ),
        pytest.param(
            with_auth("method: token\ntoken: ${1X}"),
            'auth.token: invalid environment variable reference "${1X}"',
            id="invalid-reference",
        ),
        pytest.param(
            with_auth("method: token\ntoken: 12345"),
            "auth.token: expected a string, got integer (quote it)",
            id="secret-wrong-type",
        ),
        pytest.param(
            with_auth("method: token\ntoken: ''"),
            "auth.token: must not be empty",
            id="empty-secret",
        ),
        pytest.param(
            "auth: token\nprojects: []\n",
            "auth: expected a mapping, got string",
            id="auth-not-mapping",
        ),
        pytest.param(
            with_auth("method: token\ntoken: t", " []"),
            "projects: must contain at least one project",
            id="no-projects",
        ),
        pytest.param(
            with_auth("method: token\ntoken: t", " {a: 1}"),
            "projects: expected a list of projects, got mapping",
            id="projects-not-list",
        ),
        pytest.param(
            with_auth("method: token\ntoken: t", "\n  - just-a-string"),
            "projects[0]: expected a mapping, got string",
            id="project-not-mapping",
        ),
        pytest.param(
            "projects: []\n",
            "auth: required",
            id="missing-auth",
        ),
        pytest.param(
            "- a\n- b\n",
            "(top level): expected a mapping, got list",
            id="top-level-list",
        ),
    ],
)
def test_error_with_key_path(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in problems(tmp_path, text)


def test_missing_project_sections_reported_once(tmp_path: Path) -> None:
    assert problems(tmp_path, "auth:\n  method: token\n  token: t\n") == ("projects: required",)


def test_password_method_lists_every_missing_key(tmp_path: Path) -> None:
    assert problems(tmp_path, with_auth("method: password")) == (
        "auth.password: required (or password_file) for method password",
        "auth.domain_name: required",
        "auth.user_name: required",
    )


def test_duplicate_project_id(tmp_path: Path) -> None:
    text = with_auth(
        "method: token\ntoken: t",
        "\n  - {project_id: p, region: r, services: [a]}"
        "\n  - {project_id: q, region: r, services: [a]}"
        "\n  - {project_id: p, region: r, services: [b, b]}",
    )
    assert problems(tmp_path, text) == (
        "projects[2].services[1]: duplicate service id",
        "projects[2].project_id: duplicate of projects[0].project_id",
    )


def test_invalid_regex_shows_the_regex_error(tmp_path: Path) -> None:
    text = with_project("project_id: p\nregion: r\ndiscovery: {enabled: true, name_pattern: '(a'}")
    assert problems(tmp_path, text) == (
        "projects[0].discovery.name_pattern: invalid regular expression: "
        "missing ), unterminated subpattern at position 0",
    )


@pytest.mark.parametrize(
    ("polling", "expected"),
    [
        ("interval: 5x", 'polling.interval: invalid duration "5x" (use e.g. 500ms, 30s, 5m, 1h)'),
        ("interval: 30", None),
        ("timeout: '10'", 'polling.timeout: invalid duration "10" (use e.g. 500ms, 30s, 5m, 1h)'),
        ("timeout: 0s", "polling.timeout: must be greater than 0"),
        ("timeout: -1", "polling.timeout: must be greater than 0"),
        (
            "timeout: true",
            "polling.timeout: expected a duration (use e.g. 500ms, 30s, 5m, 1h), got boolean",
        ),
        (
            "logs_interval: [1m]",
            "polling.logs_interval: expected a duration (use e.g. 500ms, 30s, 5m, 1h), got list",
        ),
        ("max_concurrency: 0", "polling.max_concurrency: must be at least 1"),
        ("max_concurrency: '8'", "polling.max_concurrency: expected an integer, got string"),
        ("max_concurrency: 2.5", "polling.max_concurrency: expected an integer, got number"),
        ("max_concurrency: ${CONC}", 'polling.max_concurrency: expected an integer, got "lots"'),
        ("retries: -1", "polling.retries: must be at least 0"),
        ("retries: false", "polling.retries: expected an integer, got boolean"),
        ("max_requests_per_second: 0", "polling.max_requests_per_second: must be greater than 0"),
        (
            "max_requests_per_second: .inf",
            "polling.max_requests_per_second: must be greater than 0",
        ),
        (
            "max_requests_per_second: fast",
            "polling.max_requests_per_second: expected a number, got string",
        ),
        ("interval: 10m", "polling.stale_after: must be at least polling.interval (600s)"),
        (
            "interval: 1m\nstale_after: 59s",
            "polling.stale_after: must be at least polling.interval (60s)",
        ),
        (
            "events_lookback: 1d",
            'polling.events_lookback: invalid duration "1d" (use e.g. 500ms, 30s, 5m, 1h)',
        ),
        ("bogus: 1", "polling.bogus: unknown key"),
    ],
)
def test_polling_values(tmp_path: Path, polling: str, expected: str | None) -> None:
    text = with_polling(polling)
    if expected is None:
        load(tmp_path, text)
    else:
        assert problems(tmp_path, text, {"CONC": "lots"}) == (expected,)


def test_polling_retries_zero_is_allowed(tmp_path: Path) -> None:
    assert load(tmp_path, with_polling("retries: 0")).polling.retries == 0


def test_tls_ca_file_must_exist(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL + "tls:\n  ca_file: nope.pem\n") == (
        'tls.ca_file: cannot read "nope.pem": No such file or directory',
    )
    assert problems(tmp_path, MINIMAL + "tls:\n  ca_file: 1\n") == (
        "tls.ca_file: expected a string, got integer (quote it)",
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "no PEM certificate in it"),
        (b"not a certificate\n", "no PEM certificate in it"),
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "not a valid PEM"),
        ("key", "no PEM certificate in it"),  # a private key is not a CA
        ("der", "no PEM certificate in it"),  # the right certificate, DER-encoded
    ],
)
def test_tls_ca_file_must_be_a_pem_bundle(
    tmp_path: Path, content: bytes | str, reason: str
) -> None:
    ca = trustme.CA()
    if content == "key":
        content = ca.private_key_pem.bytes()
    elif content == "der":
        content = ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode("ascii"))
    assert isinstance(content, bytes)
    (tmp_path / "ca.pem").write_bytes(content)
    (found,) = problems(tmp_path, MINIMAL + "tls:\n  ca_file: ca.pem\n")
    assert found.startswith('tls.ca_file: "ca.pem": ' + reason), found
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    assert load(tmp_path, MINIMAL + "tls:\n  ca_file: ca.pem\n").tls.ca_file


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    text = f"""
    auth:
      method: token
      token: ${{MODELARTS_TOKEN}}
      bogus: 1
    projects:
      - region: cn-north-4
        services: [{SERVICE_ID}]
      - project_id: second
        region: cn-north-4
        discovery:
          name_pattern: "["
    polling:
      interval: 5x
      max_concurrency: many
    tls:
      ca_file: missing.pem
    """
    assert problems(tmp_path, text) == (
        "auth.bogus: unknown key",
        "auth.token: environment variable MODELARTS_TOKEN is not set",
        "projects[0].project_id: required",
        "projects[1].discovery.name_pattern: invalid regular expression: "
        "unterminated character set at position 0",
        "projects[1]: no services and discovery disabled",
        'polling.interval: invalid duration "5x" (use e.g. 500ms, 30s, 5m, 1h)',
        "polling.max_concurrency: expected an integer, got string",
        'tls.ca_file: cannot read "missing.pem": No such file or directory',
    )


# --- file-level errors ---------------------------------------------------------------------


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, env={})
    assert caught.value.problems == (
        f"{missing}: cannot read config file: No such file or directory",
    )


def test_empty_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# only a comment\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == (f"{path}: config file is empty",)


def test_parse_config_of_nothing() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(None, env={}, base_dir=Path())
    assert caught.value.problems == ("(top level): the configuration is empty",)


def test_yaml_syntax_error_has_position(tmp_path: Path) -> None:
    path = write(tmp_path, "auth:\n  method: token\n  token: [unclosed\nprojects: []\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    (line,) = caught.value.problems
    assert line.startswith(f"{path}:4:9: invalid YAML: ")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"auth: \xff\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == (f"{path}: config file is not UTF-8 text",)


def test_duplicate_yaml_key_reported_with_position(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("token: abc", "token: abc\n  token: def"))
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.problems == (f'{path}:5:3: duplicate key "token"',)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "auth: {method: token, token: t}\n"
        "projects:\n"
        "  - &first {project_id: a, region: cn-north-4, services: [s]}\n"
        "  - {<<: *first, project_id: b, region: cn-east-3}\n",
    )
    config = load_config(path, env={})
    assert [(p.project_id, p.region, p.services) for p in config.projects] == [
        ("a", "cn-north-4", ("s",)),
        ("b", "cn-east-3", ("s",)),
    ]


# --- secrets never leak --------------------------------------------------------------------


def test_secret_hides_its_value() -> None:
    secret = Secret(SECRET)
    assert secret.reveal() == SECRET
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r}", format(secret)):
        assert SECRET not in shown
        assert shown == "Secret('***')"
    assert SECRET not in repr(AuthConfig(method="token", token=secret))
    assert SECRET not in str([secret, {"k": secret}])


def test_secret_equality_and_hash() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert len({Secret("a"), Secret("a"), Secret("b")}) == 2
    assert copy.deepcopy(Secret("a")) == Secret("a")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "auth",
    [
        f"method: aksk\naccess_key: a\nsecret_key: b\ntoken: {SECRET}",
        f"method: token\ntoken: {SECRET}\ntoken_file: other",
        f"method: token\ntoken: {SECRET}\nbogus: {SECRET}",
        f"method: {SECRET}\ntoken: {SECRET}",
        f"method: password\ndomain_name: d\nuser_name: u\npassword: {SECRET}\n"
        f"iam_endpoint: {SECRET}",
        f"method: token\ntoken: {SECRET}: oops",
        f"method: token\ntoken: [{SECRET}",
        f"method: token\ntoken: {SECRET}\ntoken: {SECRET}",
        "method: aksk\naccess_key_file: ak\nsecret_key_file: sk\nsecurity_token_file: dir",
    ],
)
def test_config_errors_never_show_secrets(tmp_path: Path, auth: str) -> None:
    (tmp_path / "ak").write_text(SECRET + "\n", encoding="utf-8")
    (tmp_path / "sk").write_text(SECRET + "\n", encoding="utf-8")
    (tmp_path / "dir").mkdir()
    bad_project = "\n  - {project_id: p, region: r, services: [s], oops: 1}"
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, with_auth(auth, bad_project))
    assert caught.value.problems
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


def test_valid_config_repr_hides_every_secret(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        with_auth(
            f"method: aksk\naccess_key: {SECRET}\nsecret_key: {SECRET}x\nsecurity_token: {SECRET}y"
        ),
    )
    assert SECRET not in repr(config)
    assert SECRET not in str(config)


# --- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h2m3s4ms", 3723.004),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        ("0s", 0.0),
        (30, 30.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "5x",
        "s",
        "-5s",
        "1s1m",
        "1s1s",
        "5 s",
        "1.s",
        ".5s",
        "1d",
        "5ms5m",
        True,
        -1,
        float("nan"),
        float("inf"),
    ],
)
def test_parse_duration_rejects(text: str | float) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


_UNITS = (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1))


@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=4, max_size=4), st.data())
def test_parse_duration_sums_its_parts(amounts: list[int], data: st.DataObject) -> None:
    # Any non-empty, in-order subset of units: the result is the exact sum in milliseconds.
    chosen = data.draw(
        st.lists(st.sampled_from(range(4)), min_size=1, max_size=4, unique=True).map(sorted)
    )
    text = "".join(f"{amounts[i]}{_UNITS[i][0]}" for i in chosen)
    total_ms = sum(amounts[i] * _UNITS[i][1] for i in chosen)
    assert parse_duration(text) == float(Fraction(total_ms, 1000))


@given(st.text(alphabet="0123456789.hmsd -x", max_size=12))
def test_parse_duration_only_raises_value_error(text: str) -> None:
    try:
        result = parse_duration(text)
    except ValueError:
        return
    assert result >= 0
    assert re.fullmatch(r"\s*(\d+(\.\d+)?(h|ms|m|s))+\s*", text)


@given(st.integers(min_value=1, max_value=10**9))
def test_parse_duration_milliseconds_round_trip(millis: int) -> None:
    assert parse_duration(f"{millis}ms") == millis / 1000


# --- helpers -------------------------------------------------------------------------------


def test_endpoint_helpers() -> None:
    assert iam_endpoint_for("cn-north-4") == "https://iam.cn-north-4.myhuaweicloud.com"
    assert modelarts_endpoint_for("cn-east-3") == "https://modelarts.cn-east-3.myhuaweicloud.com"


def test_config_error_accepts_one_line_or_many() -> None:
    assert ConfigError("a: b").problems == ("a: b",)
    error = ConfigError(["a: b", "c: d"])
    assert error.problems == ("a: b", "c: d")
    assert str(error) == "a: b\nc: d"
