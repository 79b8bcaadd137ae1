"""The release tarball, byte-identical for the same inputs.

Whatever the build machine's clock, umask, user and directory order were, an entry carries
only its path, content, kind and executable bit: entries sorted by path, one fixed mtime,
owner root (0/0, no names), modes 0755/0644 (0600 for the files named private, such as the
settings that hold the cookie), and a gzip header without a time or file name.
"""

from __future__ import annotations

import gzip
import os
import stat
import tarfile


def _entry(path: str, arcname: str, mtime: int, private: bool) -> tarfile.TarInfo:
    st = os.lstat(path)
    info = tarfile.TarInfo(arcname)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = st.st_size
        info.mode = 0o755 if st.st_mode & 0o111 else 0o600 if private else 0o644
    return info


def write_tarball(root: str, out: str, mtime: int, private: frozenset[str] = frozenset()) -> int:
    """Packs everything under ``root`` (except ``out``) as paths relative to it, so that the
    tarball unpacks into any folder as bin/, releases/, ...; ``private`` relative paths are
    readable by their owner only. Returns the number of entries."""
    paths = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + files:
            path = os.path.join(directory, name)
            if os.path.abspath(path) != os.path.abspath(out):
                paths.append(path)
    paths.sort(key=lambda p: os.path.relpath(p, root))
    with (open(out, "wb") as raw,
          gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
          tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar):
        for path in paths:
            arcname = os.path.relpath(path, root)
            info = _entry(path, arcname, mtime, arcname in private)
            if info.isreg():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return len(paths)
