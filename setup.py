"""One build step pyproject.toml cannot declare: the wheel's static files are compressed.

Everything else about the package is in pyproject.toml. After the files are copied into
the build, each text asset under app/static/ gets a ``.gz`` and a ``.br`` beside it
(whitenoise's own compressor, kept only where it saves at least 5%), which WhiteNoise
serves to browsers that accept them (app/web/assets.py). Compressing here rather than in
the source tree keeps the checkout free of copies that would go stale as the files are
edited; a checkout serves its files uncompressed.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithCompressedStatic(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return  # an editable install serves the checkout's files
        from whitenoise.compress import Compressor

        compressor = Compressor(quiet=True)
        static = Path(self.build_lib) / "app" / "static"
        for path in sorted(static.rglob("*")):
            text = path.suffix not in (".gz", ".br") and compressor.should_compress(path.name)
            if path.is_file() and text:
                compressor.compress(str(path))


setup(cmdclass={"build_py": BuildWithCompressedStatic})
