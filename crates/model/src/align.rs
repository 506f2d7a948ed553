//! Face alignment: the similarity transform from five landmarks to the 112x112
//! ArcFace template, and the bilinear warp.
//!
//! This is the same definition as `training/vargface/align.py` (the crops the model
//! was trained and evaluated on); `tests/tests/alignment.rs` checks that both give the
//! same crop. Conventions: pixel centres at integer coordinates; landmark order right
//! eye, left eye, nose tip, right and left mouth corner (the subject's right is the
//! image's left, as YuNet reports them); output pixel (x, y) samples the source at
//! inverse(M)·(x, y, 1); samples outside the image take the nearest edge pixel;
//! values are rounded as floor(v + 0.5).

use image::RgbImage;

use crate::image::{FaceCrop, CROP_SIZE};

/// Five facial landmarks in pixel coordinates.
pub type Landmarks = [[f32; 2]; 5];

/// The standard ArcFace (insightface) landmark positions in a 112x112 crop.
pub const ARCFACE_TEMPLATE: [[f64; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// A 2x3 affine matrix mapping source pixels to crop pixels.
pub type Affine = [[f64; 3]; 2];

/// The least-squares similarity transform (scale, rotation, translation) taking
/// `src` onto `dst`.
///
/// In two dimensions Umeyama's SVD solution without reflection has this closed
/// form: with centred points, a = Σ(s·d)/Σ|s|², b = Σ(s×d)/Σ|s|², M = [[a, -b], [b, a]].
/// Returns `None` when all source points coincide.
pub fn similarity_transform(src: &[[f64; 2]], dst: &[[f64; 2]]) -> Option<Affine> {
    let n = src.len().min(dst.len());
    if n == 0 {
        return None;
    }
    let mean = |pts: &[[f64; 2]]| {
        let (x, y) = pts[..n]
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        [x / n as f64, y / n as f64]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
    for (s, d) in src[..n].iter().zip(&dst[..n]) {
        let (sx, sy) = (s[0] - ms[0], s[1] - ms[1]);
        let (dx, dy) = (d[0] - md[0], d[1] - md[1]);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        norm += sx * sx + sy * sy;
    }
    if norm <= 1e-12 || !(dot.is_finite() && cross.is_finite()) {
        return None;
    }
    let (a, b) = (dot / norm, cross / norm);
    Some([
        [a, -b, md[0] - (a * ms[0] - b * ms[1])],
        [b, a, md[1] - (b * ms[0] + a * ms[1])],
    ])
}

/// The transform that aligns a face with these landmarks to the template.
pub fn alignment_transform(landmarks: &Landmarks) -> Option<Affine> {
    let src = landmarks.map(|p| [f64::from(p[0]), f64::from(p[1])]);
    similarity_transform(&src, &ARCFACE_TEMPLATE)
}

/// Warps `image` into a `CROP_SIZE` square with `m` (source to crop), bilinearly.
pub fn warp(image: &RgbImage, m: &Affine) -> Option<FaceCrop> {
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    if image.width() == 0 || image.height() == 0 || det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    // Inverse of the 2x2 part, and the translation mapped back.
    let (ia, ib) = (m[1][1] / det, -m[0][1] / det);
    let (ic, id) = (-m[1][0] / det, m[0][0] / det);
    let (tx, ty) = (m[0][2], m[1][2]);
    let (w, h) = (i64::from(image.width()), i64::from(image.height()));
    let src = image.as_raw();
    let at = |x: i64, y: i64| (y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize * 3;
    let side = CROP_SIZE as usize;
    let mut out = vec![0u8; side * side * 3];
    for (y, row) in out.chunks_exact_mut(side * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let (u, v) = (x as f64 - tx, y as f64 - ty);
            let sx = ia * u + ib * v;
            let sy = ic * u + id * v;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            // Far outside the image every sample is an edge pixel; clamping in f64
            // first keeps the casts in range.
            let x0 = x0.clamp(-2.0, w as f64 + 1.0) as i64;
            let y0 = y0.clamp(-2.0, h as f64 + 1.0) as i64;
            let (p00, p01) = (at(x0, y0), at(x0 + 1, y0));
            let (p10, p11) = (at(x0, y0 + 1), at(x0 + 1, y0 + 1));
            for c in 0..3 {
                let s = |i: usize| f64::from(src[i + c]);
                let top = s(p00) * (1.0 - fx) + s(p01) * fx;
                let bottom = s(p10) * (1.0 - fx) + s(p11) * fx;
                let value = top * (1.0 - fy) + bottom * fy;
                px[c] = (value + 0.5).floor().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let img = RgbImage::from_raw(CROP_SIZE, CROP_SIZE, out)?;
    FaceCrop::from_aligned(img).ok()
}

/// The aligned crop of the face with these landmarks; `None` if they are degenerate.
pub fn align(image: &RgbImage, landmarks: &Landmarks) -> Option<FaceCrop> {
    warp(image, &alignment_transform(landmarks)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_maps_onto_itself() {
        let m = similarity_transform(&ARCFACE_TEMPLATE, &ARCFACE_TEMPLATE).unwrap();
        let identity = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        for (row, want) in m.iter().zip(identity) {
            for (v, w) in row.iter().zip(want) {
                assert!((v - w).abs() < 1e-9, "{m:?}");
            }
        }
    }

    #[test]
    fn recovers_a_known_similarity() {
        // Template scaled by 2, rotated 30 degrees, shifted: the inverse must come back.
        let (s, r) = (2.0f64, 30f64.to_radians());
        let src: Vec<[f64; 2]> = ARCFACE_TEMPLATE
            .iter()
            .map(|p| {
                let (x, y) = (p[0] * s, p[1] * s);
                [
                    x * r.cos() - y * r.sin() + 40.0,
                    x * r.sin() + y * r.cos() - 7.0,
                ]
            })
            .collect();
        let m = similarity_transform(&src, &ARCFACE_TEMPLATE).unwrap();
        for (p, t) in src.iter().zip(ARCFACE_TEMPLATE) {
            let x = m[0][0] * p[0] + m[0][1] * p[1] + m[0][2];
            let y = m[1][0] * p[0] + m[1][1] * p[1] + m[1][2];
            assert!((x - t[0]).abs() < 1e-9 && (y - t[1]).abs() < 1e-9);
        }
    }

    #[test]
    fn identity_warp_copies_pixels_and_replicates_edges() {
        let img = RgbImage::from_fn(112, 112, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let same = warp(&img, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).unwrap();
        assert_eq!(same.rgb(), img.as_raw().as_slice());
        // Shifted right by 10: the first 10 columns repeat source column 0.
        let shifted = warp(&img, &[[1.0, 0.0, 10.0], [0.0, 1.0, 0.0]]).unwrap();
        assert_eq!(&shifted.rgb()[..3], &[0, 0, 9]);
        assert_eq!(&shifted.rgb()[11 * 3..12 * 3], &[1, 0, 9]);
    }

    #[test]
    fn degenerate_landmarks_are_refused() {
        let img = RgbImage::new(50, 50);
        assert!(align(&img, &[[10.0, 10.0]; 5]).is_none());
        assert!(align(&img, &[[f32::NAN, 1.0]; 5]).is_none());
    }
}
