"""Push a finished run to the Hugging Face Hub: the model (or LoRA adapter), its processor, card, results and config.

One upload at the end of the run (`--push_to_hub`, `--hub_model_id`, `--hub_private_repo`, `--hub_revision`), through
`huggingface_hub`'s client. The token comes from `--hub_token`, else `HF_TOKEN`, else the `hf auth login` store (the
client's own lookup); it is never logged nor written (`resolved_config` leaves it out of `hftl_config.yaml`).
"""

from __future__ import annotations

import logging
import os
import shlex

from transformers import TrainingArguments

from hftl.errors import InputError, PushError

logger = logging.getLogger("hftl")

# what stays local: Trainer checkpoints (optimizer, RNG and domain-adaptation state), the first stage of
# two_stage, TensorBoard logs, and pickled files (`training_args.bin`), which the Hub's users should not have to load
PUSH_IGNORE_PATTERNS = [
    "checkpoint-*",
    ".checkpoint-*",  # a checkpoint save a kill interrupted (see hftl.trainer)
    "stage1/*",
    "candidates/*",  # --adaptation auto: every candidate's weights, outputs and features
    "runs/*",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
]


def _describe(error: Exception, endpoint: str) -> str:
    """What failed, in words a user can act on."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        import httpx2 as httpx  # huggingface_hub 2.x's HTTP client
    except ImportError:
        import httpx

    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return (
                f"the Hub refused the token (401 Unauthorized: {error.server_message or 'invalid credentials'}); "
                "pass a token with write access as --hub_token, in HF_TOKEN or with `hf auth login`"
            )
        if status == 403:
            return f"the token may not write to this repository (403 Forbidden: {error.server_message})"
    if isinstance(error, (httpx.TransportError, ConnectionError)):
        return f"could not reach {endpoint} ({type(error).__name__}: {error})"
    return f"{type(error).__name__}: {error}"


def _retry_command(repo_id: str, output_dir: str, revision: str | None) -> str:
    words = ["hf", "upload", repo_id, output_dir, "."]
    if revision:
        words += ["--revision", revision]
    for pattern in PUSH_IGNORE_PATTERNS:
        words += ["--exclude", pattern]
    return shlex.join(words)


def take_token(training_args: TrainingArguments) -> str | None:
    """Remove `--hub_token` from `training_args` and return it.

    The Trainer pickles its arguments into `training_args.bin` (output folder and every checkpoint); without the
    token there, no file of the run holds it. Pass the returned token to `push_to_hub`.
    """
    token, training_args.hub_token = training_args.hub_token, None
    return token


def check_push(hub_model_id: str | None, output_dir: str | None, hub_token: str | None) -> None:
    """Before anything trains: the push at the end would have a valid repository id, a token and a network.

    No request is sent: the token is only looked up (`--hub_token`, else `HF_TOKEN`, else the `hf auth login` store).

    Raises:
        InputError: an invalid `--hub_model_id` (or, without one, an `--output_dir` folder name that is not a valid
            repository name), no token, or `HF_HUB_OFFLINE` set.
    """
    from huggingface_hub import constants, get_token
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo_id = hub_model_id or os.path.basename(os.path.abspath(output_dir or "."))
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        given = (
            f"--hub_model_id {hub_model_id!r}"
            if hub_model_id
            else f"--hub_model_id not given, so the repository is named after the --output_dir folder {repo_id!r}"
        )
        raise InputError(
            f"--push_to_hub: {given}, which is not a valid Hub repository id ({error}). Pass --hub_model_id NAME or "
            f"NAMESPACE/NAME (letters, digits, '-', '_', '.'; at most 96 characters)."
        ) from None
    try:
        token = hub_token or get_token()  # get_token: HF_TOKEN, then the `hf auth login` store
    except Exception as error:  # e.g. a failed OIDC token exchange (HF_OIDC_RESOURCE)
        raise InputError(f"--push_to_hub: looking for a Hub token failed: {error}.") from None
    if token is None:
        raise InputError(
            "--push_to_hub: no Hub token found (no --hub_token, no HF_TOKEN, no stored login), so the push after "
            "training would fail. Run `hf auth login`, or pass --hub_token (or set HF_TOKEN)."
        )
    if constants.HF_HUB_OFFLINE:
        raise InputError("--push_to_hub with HF_HUB_OFFLINE set: the Hub cannot be reached. Unset HF_HUB_OFFLINE.")


def push_to_hub(output_dir: str, training_args: TrainingArguments, token: str | None = None) -> str:
    """Upload `output_dir` (model or adapter, processor, README.md, hftl_config.yaml, results; no checkpoints).

    `token`: the `--hub_token` that `take_token` kept; None: `training_args.hub_token`, else `HF_TOKEN`, else the
    `hf auth login` store.

    The repository is `--hub_model_id`, else the folder's name in the token owner's namespace; it is created if
    missing (private with `--hub_private_repo`), and `--hub_revision` names a branch, created from main if missing.

    Returns:
        The URL of the commit.

    Raises:
        PushError: no token, the Hub unreachable or refusing; says which step failed and how to retry. The local
            output is complete either way.
    """
    from huggingface_hub import HfApi, constants, get_token

    repo_id = training_args.hub_model_id or os.path.basename(os.path.abspath(output_dir))
    revision = training_args.hub_revision
    retry_command = _retry_command(repo_id, output_dir, revision)
    retry = f"The local output in {output_dir} is complete; push it later with `{retry_command}`."
    try:
        token = token or training_args.hub_token or get_token()  # get_token: HF_TOKEN, then the `hf auth login` store
    except Exception as error:  # e.g. a failed OIDC token exchange (HF_OIDC_RESOURCE)
        raise PushError(f"Push to the Hub ({repo_id}) failed while looking for a token: {error}. {retry}") from None
    if token is None:
        raise PushError(
            f"Push to the Hub ({repo_id}) not attempted: no token. Pass --hub_token, set HF_TOKEN or run "
            f"`hf auth login`. {retry}"
        )
    api = HfApi(token=token)
    step = "creating the repository"
    try:
        repo = api.create_repo(repo_id, private=training_args.hub_private_repo, exist_ok=True)
        repo_id = repo.repo_id
        if revision:
            step = f"creating the branch {revision}"
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        step = "uploading the files"
        logger.info("Pushing %s to %s (checkpoints and pickled files stay local)", output_dir, repo)
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=output_dir,
            revision=revision,
            commit_message="Upload model trained with hftl",
            ignore_patterns=list(PUSH_IGNORE_PATTERNS),
        )
    except Exception as error:
        message = _describe(error, api.endpoint or constants.ENDPOINT).replace(token, "<token>")
        raise PushError(f"Push to the Hub ({repo_id}) failed while {step}: {message}. {retry}") from None
    logger.info("Pushed %s to %s", output_dir, commit.commit_url)
    return commit.commit_url
