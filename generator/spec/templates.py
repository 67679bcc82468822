"""Jinja2 templates -> C (or QAPI, hx, rst) text.

StrictUndefined everywhere: a template that names a parameter the spec does
not give fails with the template's own file and line.
"""

import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import jinja2

from generator.errors import SpecError
from generator.source import SourceInfo, confined, display_path, read_input
from generator.spec.load import decode_text


def c_string(text: str) -> str:
    """A C string literal body: escape backslashes and quotes."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def qapi_upper(name: str) -> str:
    """QAPI's camel_to_upper(): the prefix of a QAPI enum's C constants.

    DeviceAdminPowerState -> DEVICE_ADMIN_POWER_STATE, as
    scripts/qapi/common.py spells it, so templates can name the constants
    the QAPI generator will emit.
    """
    ret, upc = name[0], name[0].isupper()
    for ch in name[1:]:
        if ch.isupper() != upc:
            if upc:
                if len(ret) > 2 and ret[-2].isalnum():
                    ret = ret[:-1] + "_" + ret[-1]
            elif ret[-1].isalnum():
                ret += "_"
        ret += ch
        upc = ch.isupper()
    return re.sub(r"[^A-Za-z0-9_]", "_", ret.upper()).lstrip("_")


FILTERS = {
    "c_string": c_string,
    "qapi_upper": qapi_upper,
}


def _verbatim(templates: Path, missing_ok: bool) -> Callable[[str], str]:
    def verbatim(name: str) -> str:
        """A file under the templates directory, not rendered (a diff or
        a table dump that may hold `{{`)."""
        path = confined(templates, name) if isinstance(name, str) else None
        if path is None:
            raise jinja2.TemplateError(f"verbatim('{name}'): outside "
                                       f"{display_path(templates)}/")
        if missing_ok and not path.exists():
            return f"({name} is not made yet)"
        try:
            return decode_text(read_input(path), display_path(path))
        except OSError as e:
            raise jinja2.TemplateError(f"verbatim('{name}'): {e.strerror}")
        except SpecError as e:
            raise jinja2.TemplateError(f"verbatim('{name}'): {e}")
    return verbatim


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    from generator.paths import cache_dir
    directory = cache_dir() / "jinja"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None     # no cache: slower, same output
    return jinja2.FileSystemBytecodeCache(str(directory))


class ConfinedLoader(jinja2.FileSystemLoader):
    """Templates and their includes from one directory, never through a
    symbolic link out of it, as UTF-8 text without NUL bytes."""

    def __init__(self, templates: Path):
        super().__init__(str(templates))
        self.templates = templates

    def get_source(self, environment: jinja2.Environment, template: str
                   ) -> tuple[str, str, Callable[[], bool]]:
        path = confined(self.templates, template)
        if path is None:
            raise jinja2.TemplateNotFound(
                f"{template} (outside {display_path(self.templates)}/)")
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        try:
            data = read_input(path)
        except OSError as e:
            raise jinja2.TemplateNotFound(f"{template} ({e.strerror})")
        mtime = path.stat().st_mtime
        text = decode_text(data, display_path(path))
        return text, str(path), lambda: path.is_file() and \
            path.stat().st_mtime == mtime


def make_env(templates: Path, missing_data_ok: bool = False
             ) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=ConfinedLoader(Path(templates)),
        # compiled templates kept between runs (keyed by their source)
        bytecode_cache=_bytecode_cache(),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    env.globals["verbatim"] = _verbatim(templates, missing_data_ok)
    return env


def render_string(env: jinja2.Environment, text: str,
                  context: Mapping[str, object], info: SourceInfo) -> str:
    """A spec value that may name template parameters (`{{ tree.version }}`)."""
    try:
        return env.from_string(text).render(**context)
    except jinja2.TemplateError as e:
        raise SpecError(f"'{text}': {e}", info)
    except SpecError:
        raise
    except Exception as e:      # 1 // 0, a recursion: the spec's fault
        raise SpecError(f"'{text}': {type(e).__name__}: {e}", info)


def _template_location(templates: Path, name: str) -> SourceInfo:
    """The template file and line the current exception was raised at."""
    tb = sys.exc_info()[2]
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).name == Path(name).name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return SourceInfo(display_path(templates / name), line)


def render(env: jinja2.Environment, templates: Path, name: str,
           context: Mapping[str, object], info: SourceInfo) -> str:
    """Render one template; errors name the template line and the spec item."""
    try:
        text = env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as e:
        raise SpecError(f"template syntax error: {e.message}",
                        SourceInfo(display_path(templates / name), e.lineno,
                                   info.item))
    except jinja2.TemplateNotFound as e:
        where = _template_location(templates, name)
        raise SpecError(f"template '{e.message}' not found in "
                        f"{display_path(templates)}/ (rendering for {info})",
                        where.at(item=None))
    except jinja2.TemplateError as e:
        where = _template_location(templates, name)
        raise SpecError(f"{e.message} (rendering for {info})",
                        where.at(item=None))
    except SpecError:
        raise   # an included file that is not UTF-8: it names itself
    except Exception as e:      # 1 // 0, a recursion: the template's fault
        where = _template_location(templates, name)
        raise SpecError(f"{type(e).__name__}: {e} (rendering for {info})",
                        where.at(item=None))
    if text and not text.endswith("\n"):
        text += "\n"
    return text
