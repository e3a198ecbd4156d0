"""Build hook: the wheel carries the bot's own schema files (migrations/, beside the packages in the checkout)
as bot/_schema/, where `guardian db upgrade` finds them in an installed package (bot/schema.py)."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithSchema(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install reads migrations/ from the checkout itself
            return
        target = Path(self.build_lib) / "bot" / "_schema"
        target.mkdir(parents=True, exist_ok=True)
        for sql in sorted((ROOT / "migrations").glob("*.sql")):
            self.copy_file(str(sql), str(target / sql.name))


setup(cmdclass={"build_py": BuildWithSchema})
