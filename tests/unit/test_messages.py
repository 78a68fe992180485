"""schemas/messages.py stays the one home of the user-facing texts.

Any string literal with Chinese text in schemas/, service/, consumers/ or producers/ outside the catalog
is a message spelt in a second place. Docstrings (of modules, classes, functions and attributes) and
comments may quote the texts; migrations are history and are left as they were written.
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from schemas import messages

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "service", "consumers", "producers")
CATALOG = ROOT / "schemas" / "messages.py"
MIGRATIONS = ROOT / "service" / "db" / "migrations"
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
"""CJK punctuation, unified ideographs and full-width forms (`：`, `（`, `，`)."""


def _docstrings(tree: ast.AST) -> set[int]:
    """Ids of the string constants that stand alone as a statement: docstrings, attribute docstrings."""
    return {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    }


def chinese_literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of each string literal with Chinese text, in source order; an f-string counts once,
    as a whole, with `{…}` for its fields."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(value) for value in node.values)
            text = "".join(str(v.value) if isinstance(v, ast.Constant) else "{…}" for v in node.values)
            if CJK.search(text):
                found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            if CJK.search(node.value):
                found.append((node.lineno, node.value))
    return sorted(found)


def sources() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != CATALOG and MIGRATIONS not in path.parents:
                yield path


def test_no_chinese_literal_outside_the_catalog() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sources()
        for line, text in chinese_literals(path)
    ]
    assert not found, "user-facing texts belong in schemas/messages.py:\n" + "\n".join(found)


def test_the_scanner_sees_literals_and_f_strings_but_not_docstrings(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""模块说明"""\n'
        "X = 1\n"
        '"""属性说明"""\n'
        "def f(name):\n"
        '    """函数说明"""\n'
        "    # 注释\n"
        '    raise ValueError(f"源表不存在：{name}")\n'
        'Y = "连接超时"\n'
        'Z = "plain English"\n',
        encoding="utf-8",
    )
    assert chinese_literals(sample) == [(7, "源表不存在：{…}"), (8, "连接超时")]


def test_the_texts_fixed_by_the_spec_keep_their_spelling() -> None:
    """docs/spec.md §3: clients match these texts."""
    assert (messages.OK, messages.SYNC_SUCCEEDED, messages.RUNNING_IN_BACKGROUND) == (
        "操作成功", "同步成功", "同步已在后台执行")
    assert messages.sync_failed("连接超时") == "同步失败：连接超时"
    assert (messages.BATCH_NOT_FOUND, messages.BATCH_RUNNING, messages.BATCH_NOT_FAILED) == (
        "批次不存在", "批次正在同步中", "批次未处于失败状态")
    assert messages.unavailable(messages.DATABASE) == messages.DATABASE_DOWN == "服务暂不可用：数据库"
    assert (messages.INTERNAL, messages.AUTH_FAILED, messages.FORBIDDEN) == (
        "服务器内部错误", "认证失败，无法访问系统资源", "无权限执行此操作")
    assert messages.bad_field("name", messages.MISSING) == "参数错误：name：缺少必填字段"
    assert (messages.CONNECT_TIMEOUT, messages.AUTH_REJECTED, messages.CONNECT_REFUSED) == (
        "连接超时", "认证失败", "连接被拒绝")
    assert messages.source_table_missing("orders") == "源表不存在：orders"
    assert (messages.BODY_TOO_LARGE, messages.PATH_REFUSED, messages.MOVED_NEEDS_SECRETS) == (
        "请求体过大", "文件路径不在允许的目录中", "修改连接地址时必须重新输入密码")
