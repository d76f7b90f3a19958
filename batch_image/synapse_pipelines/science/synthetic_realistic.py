"""Rendering of the realistic profile: placing synapses and unpaired puncta by the truth
rules, per-channel images with tissue fields, drift, noise and registration
(``make_experiment(profile="realistic")`` calls :func:`make_realistic`).
"""

from __future__ import annotations

import math

import numpy as np

from synapse_pipelines.science import synthetic_render as sr, synthetic_tissue as tissue
from synapse_pipelines.science.synthetic_profiles import (
    ALL_CHANNELS,
    POSTSYNAPTIC,
    PRESYNAPTIC,
    VOXEL_UNIT,
    Profile,
    SyntheticExperiment,
)


# ------------------------------------------------------------------------- realistic
def make_realistic(
    shape: tuple[int, int, int],
    *,
    seed: int,
    prof: Profile,
    knobs: dict[str, float],
    shift_nm: np.ndarray,
    voxel: np.ndarray,
    names: tuple[str, ...],
    dtype: str,
) -> SyntheticExperiment:
    """The realistic model: tissue, objects, frames, then each channel's image."""
    density, unpaired = knobs["density"], knobs["unpaired"]
    misreg = knobs["misregistration"]
    shift_vox = shift_nm / voxel
    root = np.random.SeedSequence(seed)
    geo_seq, field_seq, chan_seq = root.spawn(3)
    geo = np.random.default_rng(geo_seq)
    # per channel: (registration stream, rendering stream)
    chan_seqs = {
        n: tuple(s.spawn(2))
        for n, s in zip(ALL_CHANNELS, chan_seq.spawn(len(ALL_CHANNELS)), strict=True)
    }

    # --- tissue fields and object positions (tissue frame, voxels) ---------------------
    # puncta up to ~3 z-sigmas outside the stack still light its first / last sections
    max_sz = max(st.sigma_z_nm for st in prof.styles.values()) / voxel[0]
    margin = math.ceil(3.0 * max_sz * 1.6) + 1
    fl = tissue.make_fields(np.random.default_rng(field_seq), shape, margin, voxel, prof)
    zrange = (float(-margin), float(shape[0] - 1 + margin))
    a = prof.network_attraction
    w_pre = fl.tissue * (1.0 + a * fl.net["pre"])
    w_post = fl.tissue * (1.0 + a * fl.net["post"])
    w_syn = fl.tissue * (1.0 + 0.5 * a * (fl.net["pre"] + fl.net["post"]))

    def sample(d: float, w: np.ndarray) -> np.ndarray:
        return tissue.sample_points(geo, d * density, w, fl, zrange, shape, voxel)

    syn = sample(prof.synapse_density_um3, w_syn)
    inh = sample(prof.synapse_density_um3 * prof.inhibitory_fraction, w_syn)
    pre_orph = sample(prof.pre_orphan_um3 * unpaired, w_pre)
    post_orph = sample(prof.post_orphan_um3 * unpaired, w_post)
    # Rule 3: synapses (excitatory and inhibitory alike) do not overlap.
    both = tissue.hard_core(np.vstack([syn, inh]), voxel, prof.synapse_spacing_nm)
    syn, inh = syn[both[: len(syn)]], inh[both[len(syn) :]]
    n_syn, n_inh = len(syn), len(inh)

    def offsets(n: int) -> np.ndarray:
        # Rule 1: a bounded pre -> post distance, isotropic 3-D direction
        length = np.clip(
            geo.normal(prof.offset_nm, prof.offset_sd_nm, n),
            prof.offset_min_nm,
            prof.offset_max_nm,
        )
        return sr.unit_vectors(geo, n) * length[:, None] / voxel

    off = offsets(n_syn)
    pre_pos, post_pos = syn - 0.5 * off, syn + 0.5 * off
    off_i = offsets(n_inh)
    ipre, ipost = inh - 0.5 * off_i, inh + 0.5 * off_i
    # Rule 2: unpaired puncta keep clear of every punctum of the other channel.
    post_orph = post_orph[
        tissue.clear_of(post_orph, np.vstack([pre_pos, ipre]), voxel, prof.orphan_clearance_nm)
    ]
    pre_orph = pre_orph[
        tissue.clear_of(pre_orph, np.vstack([post_pos, post_orph]), voxel, prof.orphan_clearance_nm)
    ]

    # Synaptic puncta: correlated pre/post amplitudes, a narrower spread and a brightness
    # boost relative to unpaired puncta (log z-scores).
    za = geo.standard_normal(n_syn)
    zb = prof.amp_corr * za + math.sqrt(1 - prof.amp_corr**2) * geo.standard_normal(n_syn)
    zi_pre, zi_post = geo.standard_normal(n_inh), geo.standard_normal(n_inh)
    za, zb, zi_pre, zi_post = (prof.synapse_amp_spread * z for z in (za, zb, zi_pre, zi_post))
    z_po, z_qo = geo.standard_normal(len(pre_orph)), geo.standard_normal(len(post_orph))
    s_pre, s_post = geo.standard_normal(n_syn), geo.standard_normal(n_syn)
    s_ipre, s_ipost = geo.standard_normal(n_inh), geo.standard_normal(n_inh)
    s_po, s_qo = geo.standard_normal(len(pre_orph)), geo.standard_normal(len(post_orph))
    vglut = geo.random(n_syn) < prof.vglut1_fraction
    nr1 = geo.random(n_syn) < prof.nr1_fraction
    # Nuclei sit in the voids.
    n_nuc = max(1, round(shape[1] * shape[2] / (400 * 400)))
    void_w = np.clip(1.0 - fl.tissue, 0, 1) ** 4 + 1e-6
    nuc = tissue.sample_points(geo, 1.0, void_w, fl, (-0.5, shape[0] - 0.5), shape, voxel)
    if len(nuc) >= n_nuc:
        nuc = nuc[:n_nuc]
    else:
        nuc = np.vstack([nuc, geo.random((n_nuc - len(nuc), 3)) * np.array(shape)])
    # Registration error shared by every channel (section placement, non-rigid warp).
    jit_vox = geo.normal(0.0, 1.0, (shape[0], 2)) * prof.section_jitter_nm * misreg / voxel[1:]
    warp_spacing = prof.warp_scale_nm / float(voxel[1])
    gy = math.ceil((shape[1] - 1) / warp_spacing) + 2
    gx = math.ceil((shape[2] - 1) / warp_spacing) + 2
    warp_nodes = geo.normal(0.0, 1.0, (shape[0], gy, gx, 2)) * (
        prof.warp_nm * misreg / float(voxel[1])
    )
    centre = (np.array(shape[1:], dtype=np.float64) - 1) / 2

    def compound(
        pos: np.ndarray, zlog: np.ndarray, zsize: np.ndarray, gain: float = 1.0
    ) -> sr.PunctaGroup:
        # irregular puncta: a main Gaussian plus fainter, smaller sub-blobs around it,
        # drawn once and shared by every channel showing that object
        n = len(pos)
        k = geo.poisson(prof.sub_blobs, n)
        parent = np.concatenate([np.arange(n), np.repeat(np.arange(n), k)])
        m = int(k.sum())
        jit_sd = np.array([prof.sub_jitter_nm * 0.5, prof.sub_jitter_nm, prof.sub_jitter_nm])
        sub = np.vstack([np.zeros((n, 3)), geo.standard_normal((m, 3)) * jit_sd / voxel])
        ampf = np.concatenate([np.ones(n), geo.uniform(0.3, 0.9, m)]) * gain
        sizef = np.concatenate([np.ones(n), np.full(m, 0.8)])
        return sr.PunctaGroup(pos[parent] + sub, zlog[parent], zsize[parent], ampf, sizef, parent)

    sb = prof.synapse_amp_boost
    g_pre = compound(pre_pos, za, s_pre, sb)
    g_post = compound(post_pos, zb, s_post, sb)
    g_ipre = compound(ipre, zi_pre, s_ipre, sb)
    g_ipost = compound(ipost, zi_post, s_ipost, sb)
    g_po = compound(pre_orph, z_po, s_po)
    g_qo = compound(post_orph, z_qo, s_qo)
    groups: dict[str, list[sr.PunctaGroup]] = {
        "Synapsin647": [g_pre, g_ipre, g_po],
        "PSD95_488": [g_post, g_qo],
        "VGluT1_647": [g_pre.subset(vglut)],
        "GAD647": [g_ipre],
        "gephyrin594": [g_ipost],
        "NR1594": [g_post.subset(nr1)],
        "DAPI1st": [],
    }
    orphan_net = {"VGluT1_647": "pre", "GAD647": "pre", "gephyrin594": "post", "NR1594": "post"}

    def frames(name: str) -> tuple[sr.SectionFrames, np.ndarray, float]:
        st = prof.styles[name]
        reg_rng = np.random.default_rng(chan_seqs[name][0])
        d = reg_rng.normal(0.0, 1.0, (shape[0], 2)) * st.misreg_shift_nm * misreg
        rot = st.misreg_rot_deg * misreg * (1.0 if reg_rng.random() < 0.5 else -1.0)
        dv = d / voxel[1:]
        if name == POSTSYNAPTIC:
            dv = dv + shift_vox[1:]
        fr = sr.SectionFrames(
            mats=np.repeat(sr.rotation_matrix(rot)[None], shape[0], axis=0),
            trans=jit_vox + dv,
            warp=warp_nodes,
            spacing=warp_spacing,
            centre=centre,
        )
        return fr, dv, rot

    # --- render ------------------------------------------------------------------------
    rendered: dict[str, np.ndarray] = {}
    registration: dict[str, tuple[np.ndarray, float]] = {}
    disp_low: np.ndarray | None = None  # the shared warp on the half-resolution grid
    for name in ALL_CHANNELS:
        fr, dv, rot = frames(name)
        registration[name] = (dv.copy(), rot)
        if name in names:
            if disp_low is None:
                disp_low = sr.grid_displacement(fr, shape[1] // 2 + 1, shape[2] // 2 + 1, fl.f)
            rendered[name] = _render_channel(
                name, prof, groups[name], orphan_net.get(name), fr, disp_low, fl,
                (w_pre, w_post), nuc, knobs, shift_vox, zrange, shape, voxel, dtype,
                np.random.default_rng(chan_seqs[name][1]),
            )  # fmt: skip

    # --- ground truth (presynaptic image frame) ------------------------------------------
    pre_frames = frames(PRESYNAPTIC)[0]

    def to_pre_frame(p: np.ndarray) -> np.ndarray:
        if len(p) == 0:
            return p.reshape(0, 3)
        zi = np.clip(np.rint(p[:, 0]).astype(int), 0, shape[0] - 1)
        q = p.copy()
        q[:, 1:] = pre_frames.to_image(zi, p[:, 1:])
        return q

    def inside(p: np.ndarray) -> np.ndarray:
        return (p[:, 0] >= -0.5) & (p[:, 0] < shape[0] - 0.5)

    keep = inside(syn)
    syn_c, pre_c, post_c = (to_pre_frame(p[keep]) for p in (syn, pre_pos, post_pos))
    st_pre, st_post = prof.styles[PRESYNAPTIC], prof.styles[POSTSYNAPTIC]
    annotation = sr.annotate_synapses(
        shape,
        pre_c,
        post_c,
        np.exp(st_pre.size_log_sd * s_pre[keep]),
        np.exp(st_post.size_log_sd * s_post[keep]),
        np.array([st_pre.sigma_z_nm, st_pre.sigma_xy_nm, st_pre.sigma_xy_nm]) / voxel,
        np.array([st_post.sigma_z_nm, st_post.sigma_xy_nm, st_post.sigma_xy_nm]) / voxel,
    )
    vol_um3 = float(np.prod(np.asarray(shape) * voxel)) / 1e9
    params = {
        **knobs,
        "shift_nm_z": float(shift_nm[0]),
        "shift_nm_y": float(shift_nm[1]),
        "shift_nm_x": float(shift_nm[2]),
        "synapse_density_um3": len(syn_c) / vol_um3,
        "pre_unpaired_um3": float(inside(pre_orph).sum()) / vol_um3,
        "post_unpaired_um3": float(inside(post_orph).sum()) / vol_um3,
        "post_rotation_deg": registration[POSTSYNAPTIC][1],
    }
    # every punctum a perfect detector would see, at its centre (no sub-blobs)
    puncta = {
        PRESYNAPTIC: np.vstack([to_pre_frame(p) for p in (pre_pos, ipre, pre_orph)]),
        POSTSYNAPTIC: np.vstack([to_pre_frame(p) for p in (post_pos, post_orph)]),
    }
    return SyntheticExperiment(
        channels=rendered,
        voxel_size=tuple(float(v) for v in voxel),  # type: ignore[arg-type]
        voxel_unit=VOXEL_UNIT,
        synapse_centroids=syn_c,
        annotation=annotation,
        decoys={
            "synapsin_only": to_pre_frame(pre_orph[inside(pre_orph)]),
            "inhibitory": to_pre_frame(inh[inside(inh)]),
            "psd_only": to_pre_frame(post_orph[inside(post_orph)]),
        },
        seed=seed,
        pre_centroids=pre_c,
        post_centroids=post_c,
        registration=registration,
        params=params,
        profile="realistic",
        puncta=puncta,
    )


def _render_channel(
    name: str,
    prof: Profile,
    groups: list[sr.PunctaGroup],
    orphan_network: str | None,
    fr: sr.SectionFrames,
    disp_low: np.ndarray,
    fl: tissue.TissueFields,
    weights: tuple[np.ndarray, np.ndarray],
    nuclei: np.ndarray,
    knobs: dict[str, float],
    shift_vox: np.ndarray,
    zrange: tuple[float, float],
    shape: tuple[int, int, int],
    voxel: np.ndarray,
    dtype: str,
    crng: np.random.Generator,
) -> np.ndarray:
    """One channel's image: puncta, diffuse staining, drift, noise, clipping, rounding."""
    st = prof.styles[name]
    drift = knobs["drift"]
    pts_l, amp_l, size_l = [], [], []
    for g in groups:
        pts_l.append(g.pos)
        amp_l.append(g.ampf * np.exp(st.amp_log_sd * g.zlog))
        size_l.append(g.sizef * np.exp(st.size_log_sd * g.zsize))
    if orphan_network is not None:  # this channel's own unpaired puncta
        w = weights[0] if orphan_network == "pre" else weights[1]
        dens = prof.other_orphan_um3 * knobs["density"] * knobs["unpaired"]
        extra = tissue.sample_points(crng, dens, w, fl, zrange, shape, voxel)
        pts_l.append(extra)
        amp_l.append(np.exp(st.amp_log_sd * crng.standard_normal(len(extra))))
        size_l.append(np.exp(st.size_log_sd * crng.standard_normal(len(extra))))
    pts = np.vstack(pts_l) if pts_l else np.zeros((0, 3))
    amps = np.concatenate(amp_l) if amp_l else np.zeros(0)
    szs = np.concatenate(size_l) if size_l else np.zeros(0)
    if name == POSTSYNAPTIC and shift_vox[0] != 0:
        pts = pts + np.array([shift_vox[0], 0.0, 0.0])
    # Per-section drift: a smooth random walk of gain and diffuse level along z.
    gain = np.exp(drift * st.gain_drift_cv * sr.section_walk(crng, shape[0]))
    level = np.exp(drift * st.level_drift_cv * sr.section_walk(crng, shape[0]))
    # Section quality: most sections have smooth (correlated) noise; a few are much
    # noisier and whiter (at_example's synapsin sections 0 and 1).
    qual = np.exp(drift * st.noise_drift_sd * crng.standard_normal(shape[0]))
    noisy = crng.random(shape[0]) < min(1.0, st.bad_section_rate * drift)
    boost = 1.0 + drift * crng.uniform(0.8, 2.0, shape[0])
    qual = np.where(noisy, qual * boost, qual)
    corr = np.where(noisy, sr.BAD_SECTION_CORR, st.noise_corr)
    img = sr.render_puncta(
        shape,
        pts,
        amps * st.amp_median * knobs["snr"],
        szs,
        st.sigma_xy_nm / voxel[1],
        st.sigma_z_nm / voxel[0],
        fr,
    )
    # Diffuse staining on the process network (and a little everywhere in neuropil).
    if st.network != "none":
        lowres = fl.tissue * (st.diffuse_base + st.diffuse * fl.net[st.network])
    else:
        lowres = fl.tissue * st.diffuse_base
    diff = sr.warp_field(lowres, fl.f, fl.z0, shape, fr, disp_low)
    img += diff * level[:, None, None].astype(np.float32)
    if name == "DAPI1st":
        img += sr.render_nuclei(shape, nuclei, voxel, crng)
    img *= gain[:, None, None].astype(np.float32)
    # Noise: shot (variance ~ signal) + read, per-section quality, spatially correlated.
    var = np.maximum(img, 0.0)
    var *= np.float32(st.shot_gain)
    var += np.float32(st.read_noise**2)
    noise = sr.correlated_noise(crng, shape, corr)
    noise *= np.sqrt(var)
    noise *= qual[:, None, None].astype(np.float32)
    img += noise
    img += np.float32(st.offset)  # background subtraction leaves ~25 % of voxels at 0
    img = sr.soft_clip(img, prof.soft_knee)
    np.clip(img, 0.0, 255.0, out=img)
    if dtype == "uint8":
        out = np.rint(img).astype(np.uint8)
    else:
        out = np.rint(img * np.float32(257.0)).astype(np.uint16)
    out.setflags(write=False)
    return out
