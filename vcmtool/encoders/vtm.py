"""VTM ``EncoderApp`` (VVC reference), when on PATH: frame QPs through ``--dQPFile``.

VTM is not installable from the registries these machines reach, so this backend is only
exercised where a user has built it; ``vcmtool doctor`` reports it as missing otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from vcmtool.encoders.base import (
    ENCODERS,
    Capabilities,
    Encoder,
    EncodeResult,
    EncodeSettings,
    Probe,
    ProgressFn,
)
from vcmtool.errors import EncoderError
from vcmtool.io.open import Clip
from vcmtool.qpmap.maps import QPMaps


@ENCODERS.register("vtm")
class VTM(Encoder):
    name = "vtm"
    # EncoderApp options passed as --KEY=VALUE (VTM is not installable here: not exercised).
    param_keys = frozenset(
        {
            "SAO",
            "ALF",
            "CCALF",
            "LMCSEnable",
            "MTS",
            "Affine",
            "DepQuant",
            "SignHideFlag",
            "MaxCUWidth",
            "MaxCUHeight",
        }
    )
    owned_params = {
        "QP": "--qp / --qpmap",
        "q": "--qp / --qpmap",
        "dQPFile": "--qpmap",
        "IntraPeriod": "--intra-period",
        "InputBitDepth": "INPUT",
        "FrameRate": "--fps",
        "FramesToBeEncoded": "--frames",
    }

    @classmethod
    def capabilities(cls) -> Capabilities:
        return Capabilities("vvc", None, (0, 63), (8, 10), ".266")

    @classmethod
    def probe(cls) -> Probe:
        exe = shutil.which("EncoderApp")
        if not exe:
            return Probe(False, detail="EncoderApp (VTM) not on PATH")
        out = subprocess.run([exe, "--version"], capture_output=True, text=True)
        lines = (out.stdout or out.stderr).strip().splitlines()
        return Probe(True, lines[0] if lines else "VTM", exe)

    def _encode(
        self,
        clip: Clip,
        maps: QPMaps,
        settings: EncodeSettings,
        out_path: Path,
        progress: ProgressFn | None,
    ) -> EncodeResult:
        exe = shutil.which("EncoderApp")
        if not exe:
            raise EncoderError("vtm: EncoderApp not on PATH (build VTM and add it to PATH)")
        info = clip.info
        n = len(maps)
        qps = maps.frame_qps()
        base = int(qps[0])
        with tempfile.TemporaryDirectory(prefix="vcmtool-vtm-") as tmp:
            yuv = Path(tmp) / "in.yuv"
            with yuv.open("wb") as f:
                for fr in clip.frames():
                    f.write(fr.to_bytes())
            dqp = Path(tmp) / "dqp.txt"
            dqp.write_text("".join(f"{int(q) - base}\n" for q in qps))
            cmd = [
                exe,
                "-i",
                str(yuv),
                "-wdt",
                str(info.width),
                "-hgt",
                str(info.height),
                "-fr",
                str(round(float(info.fps))),
                "-f",
                str(n),
                "-q",
                str(base),
                f"--InputBitDepth={info.bit_depth}",
                f"--IntraPeriod={settings.intra_period or -1}",
                f"--dQPFile={dqp}",
                "-b",
                str(out_path),
                "-o",
                "",
                *(f"--{k}={v}" for k, v in settings.params.items()),
            ]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode:
                raise EncoderError(f"vtm failed (exit {r.returncode}): {r.stderr.strip()[-300:]}")
            if progress:
                progress(n)
        return EncodeResult(out_path, maps, list(maps.notes), cmd)
