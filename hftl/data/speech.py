"""Built-in spoken-language identification data (en, es, fr, it, ru) in two domains, prepared on first use.

- real: human telephone prompts from Debian's `asterisk-core-sounds-<lang>-wav` packages (8 kHz; one speaker per
  language: a model can learn the speaker as well as the language, so treat real-domain scores with that caveat).
  The packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x`, never installed system-wide;
  `silence/` and clips under 0.4 s are dropped.
- synthetic: speech generated with espeak-ng (22.05 kHz) from IVR-style phrases and spoken numbers, in many voice
  variants, speeds and pitches, from a fixed seed.

Files go to `$HFTL_CACHE/data/spoken_language_id/<domain>/<lang>/` (default `~/.cache/hftl`); a domain's folder is
written whole (staged, then renamed), so an interrupted preparation is redone, not half-used.
"""

from __future__ import annotations

import glob
import os
import random
import shutil
import subprocess
import tempfile

from hftl.assets import atomic_folder, cache_dir
from hftl.errors import InputError

LANGUAGES = ("en", "es", "fr", "it", "ru")
ESPEAK_VOICES = {"en": "en-us", "es": "es", "fr": "fr-fr", "it": "it", "ru": "ru"}
VARIANTS = ("", "+m1", "+m2", "+m3", "+m4", "+m7", "+f1", "+f2", "+f3", "+f4", "+klatt", "+croak")
MIN_SECONDS = 0.4

PHRASES = {
    "en": [
        "Please enter your account number.",
        "Your call is important to us.",
        "Press one for sales.",
        "The person you are calling is not available.",
        "Please hold the line.",
        "Goodbye.",
        "Thank you for calling.",
        "Please leave a message after the tone.",
        "That extension is invalid.",
        "You have new messages.",
        "Please try again later.",
        "Enter your password, followed by the pound key.",
    ],
    "es": [
        "Por favor, introduzca su número de cuenta.",
        "Su llamada es importante para nosotros.",
        "Pulse uno para ventas.",
        "La persona a la que llama no está disponible.",
        "Por favor, espere.",
        "Adiós.",
        "Gracias por llamar.",
        "Deje su mensaje después del tono.",
        "Esa extensión no es válida.",
        "Tiene mensajes nuevos.",
        "Por favor, inténtelo más tarde.",
        "Introduzca su contraseña.",
    ],
    "fr": [
        "Veuillez saisir votre numéro de compte.",
        "Votre appel est important pour nous.",
        "Appuyez sur un pour le service commercial.",
        "Votre correspondant n'est pas disponible.",
        "Veuillez patienter.",
        "Au revoir.",
        "Merci de votre appel.",
        "Laissez un message après le bip.",
        "Ce poste n'est pas valide.",
        "Vous avez de nouveaux messages.",
        "Veuillez réessayer plus tard.",
        "Entrez votre mot de passe.",
    ],
    "it": [
        "Inserisca il suo numero di conto.",
        "La sua chiamata è importante per noi.",
        "Prema uno per le vendite.",
        "La persona chiamata non è disponibile.",
        "Attenda in linea, prego.",
        "Arrivederci.",
        "Grazie per aver chiamato.",
        "Lasci un messaggio dopo il segnale acustico.",
        "L'interno non è valido.",
        "Ha nuovi messaggi.",
        "Riprovi più tardi.",
        "Inserisca la sua password.",
    ],
    "ru": [
        "Пожалуйста, введите номер вашего счёта.",
        "Ваш звонок очень важен для нас.",
        "Нажмите один для отдела продаж.",
        "Абонент недоступен.",
        "Пожалуйста, оставайтесь на линии.",
        "До свидания.",
        "Спасибо за звонок.",
        "Оставьте сообщение после сигнала.",
        "Неверный добавочный номер.",
        "У вас новые сообщения.",
        "Пожалуйста, повторите попытку позже.",
        "Введите ваш пароль.",
    ],
}


def data_dir(domain: str) -> str:
    return os.path.join(cache_dir(), "data", "spoken_language_id", domain)


def prepare_real() -> str:
    """Fetch and unpack the Asterisk prompt packages; returns the folder of `<lang>/<prompt>.wav` files.

    Raises:
        InputError: `apt-get` / `dpkg-deb` are missing or the download fails (the message says what to run).
    """
    import soundfile

    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise InputError("The built-in real speech data needs apt-get and dpkg-deb (Debian / Ubuntu).")

    def build(staging: str) -> None:
        with tempfile.TemporaryDirectory() as work:
            for language in LANGUAGES:
                package = f"asterisk-core-sounds-{language}-wav"
                fetched = subprocess.run(
                    ["apt-get", "download", "-q", package], cwd=work, capture_output=True, text=True
                )
                debs = glob.glob(os.path.join(work, f"{package}_*.deb"))
                if fetched.returncode != 0 or not debs:
                    raise InputError(
                        f"`apt-get download {package}` failed ({fetched.stderr.strip()[-300:]}). Run `apt-get update` "
                        f"(as root) and try again."
                    )
                unpacked = os.path.join(work, language)
                subprocess.run(["dpkg-deb", "-x", debs[0], unpacked], check=True)
                sounds = glob.glob(os.path.join(unpacked, "usr", "share", "asterisk", "sounds", "*"))[0]
                destination = os.path.join(staging, language)
                os.makedirs(destination)
                for path in sorted(glob.glob(os.path.join(sounds, "**", "*.wav"), recursive=True)):
                    relative = os.path.relpath(path, sounds)
                    if relative.startswith("silence" + os.sep):
                        continue
                    info = soundfile.info(path)
                    if info.frames / info.samplerate < MIN_SECONDS:
                        continue
                    shutil.copy(path, os.path.join(destination, relative.replace(os.sep, "__")))

    return atomic_folder(data_dir("real"), build, marker=None)


def prepare_synthetic(clips_per_language: int = 240, seed: int = 0) -> str:
    """Synthesise `clips_per_language` clips per language with espeak-ng; returns the folder.

    Raises:
        InputError: espeak-ng is not installed (`apt-get install espeak-ng`).
    """
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise InputError("The built-in synthetic speech data needs espeak-ng: apt-get install espeak-ng")

    def build(staging: str) -> None:
        rng = random.Random(seed)
        for language in LANGUAGES:
            destination = os.path.join(staging, language)
            os.makedirs(destination)
            for index in range(clips_per_language):
                if rng.random() < 0.7:
                    text = rng.choice(PHRASES[language])
                else:
                    text = " ".join(str(rng.randint(0, 9999)) for _ in range(rng.randint(1, 3)))
                voice = ESPEAK_VOICES[language] + rng.choice(VARIANTS)
                command = [
                    espeak,
                    "-v",
                    voice,
                    "-s",
                    str(rng.randint(120, 200)),
                    "-p",
                    str(rng.randint(20, 80)),
                    "-w",
                    os.path.join(destination, f"tts_{index:04d}.wav"),
                    text,
                ]
                subprocess.run(command, check=True, capture_output=True)

    return atomic_folder(data_dir("synthetic"), build, marker=None)
