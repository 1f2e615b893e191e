"""Configuration file (SPEC §3): YAML -> frozen dataclasses, validated in one pass.

Every problem in a file is collected and raised together in one `ConfigError`, one line per
problem, each starting with the key path it concerns (`projects[0].project_id: required`), so
`--config.check` can show an operator everything to fix at once.

String values may reference environment variables as `${VAR}` (`$$` is a literal `$`). Because
such a value is always a string, a numeric or boolean key whose value contains a `${VAR}`
reference is converted after substitution; any other string there is a type error.

Secret values are wrapped in `Secret` as soon as they are read and never appear in an error
message: problems about them name the key, not the value.
"""

from __future__ import annotations

import difflib
import hmac
import json
import math
import os
import re
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import yaml

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "PollingConfig",
    "ProjectConfig",
    "Secret",
    "TlsConfig",
    "iam_endpoint_for",
    "load_config",
    "modelarts_endpoint_for",
    "parse_config",
    "parse_duration",
]


class ConfigError(Exception):
    """An invalid configuration; `problems` holds one line per problem, each naming its key path."""

    problems: tuple[str, ...]

    def __init__(self, problems: str | Iterable[str]) -> None:
        lines = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("\n".join(lines))
        self.problems = lines


class Secret:
    """A secret string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself; call only where it is sent to the cloud."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Constant time, so comparing configs on reload does not leak timing about a secret.
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))


AuthMethod = Literal["token", "password", "aksk"]


@dataclass(frozen=True)
class AuthConfig:
    """How to authenticate: a fixed token, an IAM user's password, or AK/SK request signing."""

    method: AuthMethod
    token: Secret | None = None
    iam_endpoint: str | None = None
    domain_name: str | None = None
    user_name: str | None = None
    password: Secret | None = None
    access_key: Secret | None = None
    secret_key: Secret | None = None
    security_token: Secret | None = None


@dataclass(frozen=True)
class DiscoveryConfig:
    """Which listed services to watch besides the explicit ones; empty filters match all."""

    enabled: bool = False
    infer_types: tuple[str, ...] = ()
    name_pattern: re.Pattern[str] | None = None
    statuses: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectConfig:
    """One ModelArts project; `region` is "" only when an endpoint makes it unnecessary."""

    project_id: str
    region: str
    endpoint: str
    workspace_id: str | None = None
    services: tuple[str, ...] = ()
    discovery: DiscoveryConfig = DiscoveryConfig()
    generations: tuple[str, ...] = ("v1", "v2")


@dataclass(frozen=True)
class PollingConfig:
    """Schedules and request limits; durations are in seconds."""

    interval: float = 30.0
    details_interval: float = 300.0
    events_interval: float = 300.0
    monitor_interval: float = 60.0  # 0: the monitor API is not called
    logs_interval: float = 600.0
    discovery_interval: float = 300.0
    timeout: float = 10.0
    max_concurrency: int = 8
    max_requests_per_second: float = 10.0
    retries: int = 3
    stale_after: float = 300.0
    events_lookback: float = 600.0


@dataclass(frozen=True)
class TlsConfig:
    """Outbound TLS; `ca_file` is an extra CA bundle (absolute path), verification is always on."""

    ca_file: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    auth: AuthConfig
    projects: tuple[ProjectConfig, ...]
    polling: PollingConfig = PollingConfig()
    tls: TlsConfig = TlsConfig()


def iam_endpoint_for(region: str) -> str:
    """Return the regional IAM endpoint for `region`."""
    return f"https://iam.{region}.myhuaweicloud.com"


def modelarts_endpoint_for(region: str) -> str:
    """Return the ModelArts endpoint for `region`."""
    return f"https://modelarts.{region}.myhuaweicloud.com"


# --- durations -------------------------------------------------------------------------------

_DURATION_UNITS: dict[str, int] = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
# "ms" before "m" so that "5ms" is not read as five minutes and a stray "s".
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_DURATION_HINT = "use e.g. 500ms, 30s, 5m, 1h"


def parse_duration(text: str | int | float) -> float:
    """Parse "500ms", "30s", "5m", "1h" or "1m30s" (or a number of seconds) into seconds."""
    if isinstance(text, bool):
        raise ValueError("a boolean is not a duration")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"invalid duration {text!r}")
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}")
    stripped = text.strip()
    total = Fraction(0)
    position = 0
    last_rank = -1
    ranks = list(_DURATION_UNITS)
    for match in _DURATION_PART.finditer(stripped):
        rank = ranks.index(match.group(2))
        # Units must come largest first, each once, as in Prometheus ("1m30s", not "30s1m").
        if match.start() != position or rank <= last_rank:
            raise ValueError(f"invalid duration {text!r}")
        total += Fraction(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
        last_rank = rank
    if position == 0 or position != len(stripped):
        raise ValueError(f"invalid duration {text!r}")
    return float(total / 1000)


# --- parsing ---------------------------------------------------------------------------------

_AUTH_METHODS: tuple[AuthMethod, ...] = ("token", "password", "aksk")
_SECRET_KEYS = ("token", "password", "access_key", "secret_key", "security_token")
_METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "token": ("token", "token_file"),
    "password": ("iam_endpoint", "domain_name", "user_name", "password", "password_file"),
    "aksk": (
        "access_key",
        "access_key_file",
        "secret_key",
        "secret_key_file",
        "security_token",
        "security_token_file",
    ),
}
_AUTH_KEYS = ("method", *(key for keys in _METHOD_KEYS.values() for key in keys))
_TOP_KEYS = ("auth", "projects", "polling", "tls")
_PROJECT_KEYS = (
    "project_id",
    "region",
    "endpoint",
    "workspace_id",
    "services",
    "generations",
    "discovery",
)
_GENERATIONS = ("v1", "v2")
_DISCOVERY_KEYS = ("enabled", "infer_types", "name_pattern", "statuses")
_POLLING_DURATIONS = (
    "interval",
    "details_interval",
    "events_interval",
    "logs_interval",
    "discovery_interval",
    "timeout",
    "stale_after",
    "events_lookback",
)
_POLLING_KEYS = (
    *_POLLING_DURATIONS,
    "monitor_interval",
    "max_concurrency",
    "max_requests_per_second",
    "retries",
)
_TLS_KEYS = ("ca_file",)

# v1 types, then v2's (REAL_TIME, ASYNC_REAL_TIME lower-cased with "-", SPEC §4).
_INFER_TYPES = ("real-time", "batch", "edge", "async-real-time")
_SERVICE_STATUSES = (
    # v1
    "running",
    "deploying",
    "concerning",
    "failed",
    "stopped",
    "finished",
    "stopping",
    "deleting",
    "pending",
    "waiting",
    # v2 (lower-cased)
    "init",
    "upgrading",
    "error",
    "interrupting",
)

_ID = re.compile(r"[A-Za-z0-9_-]+")
_REGION = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_VARIABLE = re.compile(r"\$(?:\$|\{([^}]*)\}|(\{))")
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, date):
        return "timestamp"
    if isinstance(value, bytes):
        return "binary"
    return type(value).__name__


class _Parser:
    """One validation pass; readers record problems and return None for unusable values."""

    def __init__(self, env: Mapping[str, str], base_dir: Path) -> None:
        self._env = env
        self._base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    # -- generic readers ----------------------------------------------------------------------

    def mapping(
        self, value: object, path: str, allowed: tuple[str, ...]
    ) -> dict[str, object] | None:
        """Check `value` is a mapping with only `allowed` keys; null counts as empty."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path or "(top level)", f"expected a mapping, got {_type_name(value)}")
            return None
        result: dict[str, object] = {}
        for key, item in value.items():
            name = str(key)
            if not isinstance(key, str) or key not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                suffix = f" (did you mean {hint[0]}?)" if hint else ""
                self.problem(_join(path, name), f"unknown key{suffix}")
                continue
            result[key] = item
        return result

    def expand(self, text: str, path: str) -> str | None:
        """Replace `${VAR}` from the environment and `$$` with `$`; None if anything is unset."""
        ok = True
        pieces: list[str] = []
        position = 0
        for match in _VARIABLE.finditer(text):
            pieces.append(text[position : match.start()])
            position = match.end()
            name, unterminated = match.group(1), match.group(2)
            if unterminated is not None:
                self.problem(path, 'unterminated "${" (write "$$" for a literal "$")')
                ok = False
                break
            if name is None:
                pieces.append("$")
            elif not _VARIABLE_NAME.fullmatch(name):
                self.problem(path, f"invalid environment variable reference {_quote(match[0])}")
                ok = False
            elif name not in self._env:
                self.problem(path, f"environment variable {name} is not set")
                ok = False
            else:
                pieces.append(self._env[name])
        pieces.append(text[position:])
        return "".join(pieces) if ok else None

    def string(
        self, section: Mapping[str, object], parent: str, key: str, *, required: bool = False
    ) -> str | None:
        """A non-empty string after substitution; None when absent or invalid."""
        path = _join(parent, key)
        value = section.get(key)
        if value is None:
            if required:
                self.problem(path, "required")
            return None
        return self.string_value(value, path)

    def string_value(self, value: object, path: str) -> str | None:
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, int | float) else ""
            self.problem(path, f"expected a string, got {_type_name(value)}{hint}")
            return None
        text = self.expand(value, path)
        if text is None:
            return None
        if not text.strip():
            self.problem(path, "must not be empty")
            return None
        return text

    def string_list(
        self, section: Mapping[str, object], parent: str, key: str
    ) -> tuple[str, ...] | None:
        path = _join(parent, key)
        value = section.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"expected a list of strings, got {_type_name(value)}")
            return None
        items: list[str] = []
        ok = True
        for index, item in enumerate(value):
            text = self.string_value(item, f"{path}[{index}]")
            if text is None:
                ok = False
            else:
                items.append(text)
        return tuple(items) if ok else None

    def _from_variable(self, value: object, path: str) -> object:
        """A `${VAR}` string becomes its expansion for typed keys; anything else is unchanged."""
        if isinstance(value, str) and "${" in value:
            return self.expand(value, path)
        return value

    def boolean(self, section: Mapping[str, object], parent: str, key: str) -> bool | None:
        path = _join(parent, key)
        raw = section.get(key)
        value = self._from_variable(raw, path)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        if value is not raw and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.problem(path, f"expected a boolean (true or false), got {_type_name(value)}")
        return None

    def integer(
        self, section: Mapping[str, object], parent: str, key: str, *, minimum: int
    ) -> int | None:
        path = _join(parent, key)
        raw = section.get(key)
        value = self._from_variable(raw, path)
        if value is None:
            return None
        if value is not raw and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                self.problem(path, f"expected an integer, got {_quote(cast(str, value))}")
                return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(path, f"expected an integer, got {_type_name(value)}")
            return None
        if value < minimum:
            self.problem(path, f"must be at least {minimum}")
            return None
        return value

    def positive_number(self, section: Mapping[str, object], parent: str, key: str) -> float | None:
        path = _join(parent, key)
        raw = section.get(key)
        value = self._from_variable(raw, path)
        if value is None:
            return None
        if value is not raw and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                self.problem(path, f"expected a number, got {_quote(cast(str, value))}")
                return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"expected a number, got {_type_name(value)}")
            return None
        if not math.isfinite(value) or value <= 0:
            self.problem(path, "must be greater than 0")
            return None
        return float(value)

    def duration(self, section: Mapping[str, object], parent: str, key: str) -> float | None:
        path = _join(parent, key)
        value = section.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            text = self.expand(value, path)
            if text is None:
                return None
            value = text
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.problem(path, f"expected a duration ({_DURATION_HINT}), got {_type_name(value)}")
            return None
        if isinstance(value, int | float) and value <= 0:
            self.problem(path, "must be greater than 0")
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.problem(path, f"invalid duration {_quote(str(value))} ({_DURATION_HINT})")
            return None
        if seconds <= 0:
            self.problem(path, "must be greater than 0")
            return None
        return seconds

    def duration_or_zero(
        self, section: Mapping[str, object], parent: str, key: str
    ) -> float | None:
        """A duration where 0 (or "0s") means "off"."""
        value = section.get(key)
        if (value == 0 and not isinstance(value, bool)) or value in ("0", "0s"):
            return 0.0
        return self.duration(section, parent, key)

    def url(self, section: Mapping[str, object], parent: str, key: str) -> str | None:
        """An http(s) URL without query or fragment, trailing slashes removed."""
        path = _join(parent, key)
        text = self.string(section, parent, key)
        if text is None:
            return None
        try:
            parts = urllib.parse.urlsplit(text)
            valid = (
                parts.scheme in ("http", "https")
                and bool(parts.hostname)
                and not any(char.isspace() for char in text)
            )
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError:
            valid = False
        if not valid:
            self.problem(path, "must be an http:// or https:// URL")
            return None
        if parts.query or parts.fragment:
            self.problem(path, "must not contain a query or fragment")
            return None
        return text.rstrip("/")

    def resolve(self, text: str) -> Path:
        candidate = Path(text).expanduser()
        return candidate if candidate.is_absolute() else self._base_dir / candidate

    def secret(
        self, section: Mapping[str, object], parent: str, name: str
    ) -> tuple[bool, Secret | None]:
        """Read `name` or `name_file`; returns (given, secret) where secret is None if invalid."""
        file_key = f"{name}_file"
        path = _join(parent, name)
        file_path = _join(parent, file_key)
        inline_given = section.get(name) is not None
        file_given = section.get(file_key) is not None
        if inline_given and file_given:
            self.problem(path, f"set either {name} or {file_key}, not both")
            return True, None
        if inline_given:
            text = self.string(section, parent, name)
            return True, None if text is None else Secret(text)
        if file_given:
            location = self.string(section, parent, file_key)
            if location is None:
                return True, None
            content = self.read_secret_file(location, file_path)
            return True, None if content is None else Secret(content)
        return False, None

    def read_secret_file(self, location: str, path: str) -> str | None:
        try:
            data = self.resolve(location).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.problem(path, f"file {_quote(location)} is not UTF-8 text")
            return None
        except OSError as error:
            self.problem(path, f"cannot read {_quote(location)}: {error.strerror or error}")
            return None
        # Kubernetes Secret mounts and `echo >` both end files with a newline that is no part
        # of the secret.
        content = data.rstrip("\r\n")
        if not content.strip():
            self.problem(path, f"file {_quote(location)} is empty")
            return None
        return content

    # -- sections ------------------------------------------------------------------------------

    def config(self, data: object) -> Config | None:
        if data is None:
            self.problem("(top level)", "the configuration is empty")
            return None
        top = self.mapping(data, "", _TOP_KEYS)
        if top is None:
            return None
        auth = self.auth(top.get("auth"))
        projects = self.projects(top.get("projects"), auth)
        polling = self.polling(top.get("polling"))
        tls = self.tls(top.get("tls"))
        if auth is None or projects is None or polling is None or tls is None:
            return None
        return Config(auth=auth, projects=projects, polling=polling, tls=tls)

    def auth(self, value: object) -> AuthConfig | None:
        if value is None:
            self.problem("auth", "required")
            return None
        section = self.mapping(value, "auth", _AUTH_KEYS)
        if section is None:
            return None
        method_text = self.string(section, "auth", "method", required=True)
        method: AuthMethod | None = None
        if method_text in _AUTH_METHODS:
            method = method_text
        elif method_text is not None:
            # The value is not echoed: this section is where secrets are, misplaced ones included.
            self.problem("auth.method", f"must be one of {', '.join(_AUTH_METHODS)}")
        # Without a valid method there is nothing to require, but every given key is still checked.
        allowed = _METHOD_KEYS[method] if method else _AUTH_KEYS
        for key in _AUTH_KEYS:
            if key != "method" and key not in allowed and section.get(key) is not None:
                self.problem(_join("auth", key), f"not allowed with method {method}")
        usable = {key: item for key, item in section.items() if key in allowed}
        ok = method is not None

        secrets: dict[str, Secret] = {}
        for name in _SECRET_KEYS:
            if name not in allowed:
                continue
            given, secret = self.secret(usable, "auth", name)
            if secret is not None:
                secrets[name] = secret
            elif given:
                ok = False
            elif method is not None and name != "security_token":
                self.problem(_join("auth", name), f"required (or {name}_file) for method {method}")
                ok = False
        names: dict[str, str] = {}
        for key in ("domain_name", "user_name", "iam_endpoint"):
            if key not in allowed:
                continue
            if key == "iam_endpoint":
                text = self.url(usable, "auth", key)
            else:
                text = self.string(usable, "auth", key, required=method == "password")
            if text is not None:
                names[key] = text
            elif usable.get(key) is not None or (method == "password" and key != "iam_endpoint"):
                ok = False
        if method is None or not ok:
            return None
        return AuthConfig(
            method=method,
            token=secrets.get("token"),
            iam_endpoint=names.get("iam_endpoint"),
            domain_name=names.get("domain_name"),
            user_name=names.get("user_name"),
            password=secrets.get("password"),
            access_key=secrets.get("access_key"),
            secret_key=secrets.get("secret_key"),
            security_token=secrets.get("security_token"),
        )

    def projects(self, value: object, auth: AuthConfig | None) -> tuple[ProjectConfig, ...] | None:
        if value is None:
            self.problem("projects", "required")
            return None
        if not isinstance(value, list):
            self.problem("projects", f"expected a list of projects, got {_type_name(value)}")
            return None
        if not value:
            self.problem("projects", "must contain at least one project")
            return None
        # A region is needed for the IAM endpoint only when password auth has none configured.
        region_for_iam = auth is not None and auth.method == "password" and not auth.iam_endpoint
        projects: list[ProjectConfig] = []
        first_seen: dict[str, str] = {}
        ok = True
        for index, item in enumerate(value):
            path = f"projects[{index}]"
            project = self.project(item, path, region_for_iam=region_for_iam)
            # Compared as written, so a duplicate shows up even in a project with other problems.
            raw_id = item.get("project_id") if isinstance(item, dict) else None
            if isinstance(raw_id, str) and raw_id in first_seen:
                self.problem(f"{path}.project_id", f"duplicate of {first_seen[raw_id]}")
                ok = False
            elif isinstance(raw_id, str):
                first_seen[raw_id] = f"{path}.project_id"
            if project is None:
                ok = False
            else:
                projects.append(project)
        return tuple(projects) if ok else None

    def project(self, value: object, path: str, *, region_for_iam: bool) -> ProjectConfig | None:
        if value is None:
            self.problem(path, "expected a mapping, got null")
            return None
        section = self.mapping(value, path, _PROJECT_KEYS)
        if section is None:
            return None
        ok = True

        project_id = self.string(section, path, "project_id", required=True)
        if project_id is not None and not _ID.fullmatch(project_id):
            self.problem(
                _join(path, "project_id"), 'must contain only letters, digits, "_" and "-"'
            )
            project_id = None

        # The region only feeds endpoint defaults, so an explicit endpoint can make it optional.
        endpoint_given = section.get("endpoint") is not None
        region = self.string(section, path, "region")
        if region is not None and not _REGION.fullmatch(region):
            self.problem(_join(path, "region"), "must be a region id like cn-north-4")
            region = None
        if section.get("region") is not None:
            ok = ok and region is not None
        elif not endpoint_given or region_for_iam:
            why = " (the IAM endpoint is derived from it)" if endpoint_given else ""
            self.problem(_join(path, "region"), f"required{why}")
            ok = False

        endpoint = self.url(section, path, "endpoint")
        if endpoint_given and endpoint is None:
            ok = False

        workspace_id: str | None = None
        raw_workspace = section.get("workspace_id")
        if isinstance(raw_workspace, int) and not isinstance(raw_workspace, bool):
            # YAML reads an unquoted 0 as a number; the API wants the text.
            workspace_id = str(raw_workspace)
        elif raw_workspace is not None:
            if isinstance(raw_workspace, str):
                workspace_id = self.string(section, path, "workspace_id")
            else:
                self.problem(
                    _join(path, "workspace_id"),
                    f"expected a string or integer, got {_type_name(raw_workspace)}",
                )
            if workspace_id is None:
                ok = False

        services = self.string_list(section, path, "services")
        if services is not None:
            seen: set[str] = set()
            for index, service in enumerate(services):
                service_path = f"{path}.services[{index}]"
                if not _ID.fullmatch(service):
                    self.problem(service_path, 'must be a service id (letters, digits, "_", "-")')
                    ok = False
                elif service in seen:
                    self.problem(service_path, "duplicate service id")
                    ok = False
                seen.add(service)
        generations = self.string_list(section, path, "generations")
        if generations is not None:
            for index, item in enumerate(generations):
                if item not in _GENERATIONS:
                    self.problem(
                        f"{path}.generations[{index}]",
                        f"unknown value {_quote(item)} (one of {', '.join(_GENERATIONS)})",
                    )
                    ok = False
            if section.get("generations") is not None and not generations:
                self.problem(_join(path, "generations"), "must name at least one generation")
                ok = False
            if len(set(generations)) != len(generations):
                self.problem(_join(path, "generations"), "duplicate generation")
                ok = False
        else:
            ok = False
        enabled, discovery = self.discovery(section.get("discovery"), _join(path, "discovery"))
        if services == () and enabled is False:
            self.problem(path, "no services and discovery disabled")
            ok = False
        if project_id is None or services is None or discovery is None or not ok:
            return None
        if endpoint is None:
            endpoint = modelarts_endpoint_for(cast(str, region))
        return ProjectConfig(
            project_id=project_id,
            region=region or "",
            endpoint=endpoint,
            workspace_id=workspace_id,
            services=services,
            discovery=discovery,
            generations=tuple(generations or _GENERATIONS),
        )

    def discovery(self, value: object, path: str) -> tuple[bool | None, DiscoveryConfig | None]:
        """Returns (enabled, config): enabled is known even when a filter is invalid."""
        section = self.mapping(value, path, _DISCOVERY_KEYS)
        if section is None:
            return None, None
        ok = True
        enabled = self.boolean(section, path, "enabled")
        if section.get("enabled") is not None and enabled is None:
            ok = False
        elif enabled is None:
            enabled = False
        infer_types = self.string_list(section, path, "infer_types")
        statuses = self.string_list(section, path, "statuses")
        for key, values, known in (
            ("infer_types", infer_types, _INFER_TYPES),
            ("statuses", statuses, _SERVICE_STATUSES),
        ):
            for index, item in enumerate(values or ()):
                if item not in known:
                    self.problem(
                        f"{path}.{key}[{index}]",
                        f"unknown value {_quote(item)} (one of {', '.join(known)})",
                    )
                    ok = False
        pattern: re.Pattern[str] | None = None
        pattern_text = self.string(section, path, "name_pattern")
        if pattern_text is not None:
            try:
                pattern = re.compile(pattern_text)
            except re.error as error:
                self.problem(_join(path, "name_pattern"), f"invalid regular expression: {error}")
                ok = False
        elif section.get("name_pattern") is not None:
            ok = False
        if not ok or enabled is None or infer_types is None or statuses is None:
            return enabled, None
        config = DiscoveryConfig(
            enabled=enabled,
            infer_types=infer_types,
            name_pattern=pattern,
            statuses=statuses,
        )
        return enabled, config

    def polling(self, value: object) -> PollingConfig | None:
        section = self.mapping(value, "polling", _POLLING_KEYS)
        if section is None:
            return None
        durations = {key: self.duration(section, "polling", key) for key in _POLLING_DURATIONS}
        max_concurrency = self.integer(section, "polling", "max_concurrency", minimum=1)
        retries = self.integer(section, "polling", "retries", minimum=0)
        rate = self.positive_number(section, "polling", "max_requests_per_second")
        monitor = self.duration_or_zero(section, "polling", "monitor_interval")
        results = {
            **durations,
            "monitor_interval": monitor,
            "max_concurrency": max_concurrency,
            "retries": retries,
            "max_requests_per_second": rate,
        }
        if any(results[key] is None and section.get(key) is not None for key in results):
            return None
        defaults = PollingConfig()
        polling = PollingConfig(
            interval=durations["interval"] or defaults.interval,
            details_interval=durations["details_interval"] or defaults.details_interval,
            events_interval=durations["events_interval"] or defaults.events_interval,
            monitor_interval=defaults.monitor_interval if monitor is None else monitor,
            logs_interval=durations["logs_interval"] or defaults.logs_interval,
            discovery_interval=durations["discovery_interval"] or defaults.discovery_interval,
            timeout=durations["timeout"] or defaults.timeout,
            max_concurrency=defaults.max_concurrency
            if max_concurrency is None
            else max_concurrency,
            max_requests_per_second=rate or defaults.max_requests_per_second,
            retries=defaults.retries if retries is None else retries,
            stale_after=durations["stale_after"] or defaults.stale_after,
            events_lookback=durations["events_lookback"] or defaults.events_lookback,
        )
        if polling.stale_after < polling.interval:
            self.problem(
                "polling.stale_after",
                f"must be at least polling.interval ({_format_seconds(polling.interval)})",
            )
            return None
        return polling

    def tls(self, value: object) -> TlsConfig | None:
        section = self.mapping(value, "tls", _TLS_KEYS)
        if section is None:
            return None
        raw = section.get("ca_file")
        if raw is None or raw == "":
            return TlsConfig()
        text = self.string_value(raw, "tls.ca_file")
        if text is None:
            return None
        location = self.resolve(text)
        try:
            with location.open("rb"):
                pass
        except OSError as error:
            self.problem("tls.ca_file", f"cannot read {_quote(text)}: {error.strerror or error}")
            return None
        problem = _ca_bundle_problem(location)
        if problem is not None:
            self.problem("tls.ca_file", f"{_quote(text)}: {problem}")
            return None
        return TlsConfig(ca_file=str(location.resolve()))


def _ca_bundle_problem(location: Path) -> str | None:
    """Why the file cannot serve as a CA bundle (PEM, at least one certificate), or None.

    Parsed as start-up will parse it, so that --config.check and a reload catch what would
    otherwise fail when the HTTP client is built."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_verify_locations(cafile=str(location))
    except ssl.SSLError as error:
        if error.reason == "NO_CERTIFICATE_OR_CRL_FOUND":
            return "no PEM certificate in it (a PEM bundle of CA certificates is expected)"
        return f"not a valid PEM certificate bundle ({error.reason or error.strerror})"
    except (OSError, ValueError) as error:
        return f"not a PEM certificate bundle ({error})"
    if context.cert_store_stats()["x509"] == 0:
        return "no certificate in it (a PEM bundle of CA certificates is expected)"
    return None


def _format_seconds(seconds: float) -> str:
    return f"{seconds:g}s"


def parse_config(data: object, *, env: Mapping[str, str], base_dir: Path) -> Config:
    """Validate already-loaded YAML data; relative file paths resolve against `base_dir`."""
    parser = _Parser(env, Path(base_dir))
    config = parser.config(data)
    if parser.problems or config is None:
        raise ConfigError(parser.problems or ["(top level): invalid configuration"])
    return config


class _Loader(yaml.SafeLoader):
    """SafeLoader that records duplicate keys, which plain YAML silently lets the last one win."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[yaml.Mark, str]] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                self.duplicates.append((key_node.start_mark, key_node.value))
            seen.add(key_node.value)
        return super().construct_mapping(node, deep)


def _position(name: str, mark: yaml.Mark | None) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name


def _read_yaml(path: str | Path, what: str) -> tuple[object, list[str]]:
    """One YAML document and its duplicate-key problems; unreadable or invalid YAML raises."""
    name = str(path)
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: {what} is not UTF-8 text") from None
    except OSError as error:
        raise ConfigError(f"{name}: cannot read {what}: {error.strerror or error}") from None
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        # Only the position and the problem: the parser's snippet could quote a secret.
        message = error.problem or error.context or "syntax error"
        raise ConfigError(
            f"{_position(name, error.problem_mark)}: invalid YAML: {message}"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{name}: invalid YAML: {type(error).__name__}") from None
    finally:
        loader.dispose()
    problems = [
        f"{_position(name, mark)}: duplicate key {_quote(key)}" for mark, key in loader.duplicates
    ]
    return data, problems


def read_yaml(path: str | Path, *, what: str = "config file") -> object:
    """Read one YAML document (None when empty) for any of the exporter's files, so YAML is
    parsed in one place with the same secret-safe errors; raises ConfigError."""
    data, problems = _read_yaml(path, what)
    if problems:
        raise ConfigError(problems)
    return data


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the YAML file at `path`; raises ConfigError listing every problem."""
    location = Path(path)
    name = str(path)
    data, problems = _read_yaml(location, "config file")
    if data is None:
        raise ConfigError([*problems, f"{name}: config file is empty"])
    try:
        config = parse_config(
            data,
            env=os.environ if env is None else env,
            base_dir=location.absolute().parent,
        )
    except ConfigError as error:
        raise ConfigError([*problems, *error.problems]) from None
    if problems:
        raise ConfigError(problems)
    return config
