//! Datasets, read from their official file formats only (never downloaded at run time).

pub mod cifar;
pub mod idx;

/// Which half of a dataset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// Images as one flat `N × C × H × W` array of raw 8-bit pixels (row-major, channel
/// planes first), with integer labels. Models scale them to [0, 1] in their own
/// floating-point type (as PyTorch's `ToTensor`: x / 255).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    /// (channels, height, width)
    pub shape: (usize, usize, usize),
    pub classes: usize,
}

impl ImageSet {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels_per_image(&self) -> usize {
        self.shape.0 * self.shape.1 * self.shape.2
    }

    pub fn image(&self, i: usize) -> &[u8] {
        let p = self.pixels_per_image();
        &self.pixels[i * p..(i + 1) * p]
    }

    /// The images `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        ImageSet {
            pixels: indices
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            shape: self.shape,
            classes: self.classes,
        }
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn head(&self, n: usize) -> ImageSet {
        let all: Vec<usize> = (0..n.min(self.len())).collect();
        self.select(&all)
    }
}
