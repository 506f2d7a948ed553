//! Which photos of a labelled folder are enrolled and which are searched for: the
//! protocol of `vargface.evaluate`'s 1:N figures, so the two can be compared.
//!
//! For every person with two or more photos the first (by file name) that gave a face
//! is enrolled, and each of their other photos is a mated search. Every photo of a
//! person with one photo is a non-mated search. `unenrolled_every = n` also keeps
//! every n-th person with several photos out of the gallery (their photos become
//! non-mated searches), for folders where everyone has several photos.

/// A photo by (person index, photo index) in the labelled folder.
pub type PhotoRef = (usize, usize);

#[derive(Debug, Default, PartialEq)]
pub struct Split {
    /// One photo per enrolled person.
    pub gallery: Vec<PhotoRef>,
    pub mated: Vec<PhotoRef>,
    pub non_mated: Vec<PhotoRef>,
}

/// `photo_counts[p]`: how many photos person p has; `acquired(p, i)`: whether photo i
/// of person p gave an embedding.
pub fn split(
    photo_counts: &[usize],
    acquired: impl Fn(usize, usize) -> bool,
    unenrolled_every: Option<usize>,
) -> Split {
    let mut out = Split::default();
    let mut several = 0usize;
    for (p, &count) in photo_counts.iter().enumerate() {
        let all = (0..count).map(|i| (p, i));
        if count < 2 {
            out.non_mated.extend(all);
            continue;
        }
        several += 1;
        if unenrolled_every.is_some_and(|n| n > 0 && several.is_multiple_of(n)) {
            out.non_mated.extend(all);
            continue;
        }
        // When no photo of them gave a face there is nobody to enroll or find.
        if let Some(enrolled) = (0..count).find(|&i| acquired(p, i)) {
            out.gallery.push((p, enrolled));
            out.mated.extend(all.filter(|&(_, i)| i != enrolled));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_acquired_photo_is_enrolled_singletons_are_non_mated() {
        let s = split(&[3, 1, 2], |p, i| !(p == 0 && i == 0), None);
        assert_eq!(s.gallery, vec![(0, 1), (2, 0)]);
        assert_eq!(s.mated, vec![(0, 0), (0, 2), (2, 1)]);
        assert_eq!(s.non_mated, vec![(1, 0)]);
    }

    #[test]
    fn every_nth_person_with_several_photos_can_be_held_out() {
        let s = split(&[2, 2, 2, 2], |_, _| true, Some(2));
        assert_eq!(s.gallery, vec![(0, 0), (2, 0)]);
        assert_eq!(s.non_mated, vec![(1, 0), (1, 1), (3, 0), (3, 1)]);
    }
}
