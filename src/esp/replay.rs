//! The ESP anti-replay window (RFC 4303 section 3.4.3, with the extended
//! sequence numbers of Appendix A).
//!
//! The receiver keeps the highest sequence number authenticated so far and
//! a bitmap of the `size` numbers at and below it. A packet is checked
//! *before* its ICV is verified ([`ReplayWindow::check`], cheap rejection of
//! duplicates and stale packets) and committed only *after* the ICV verified
//! ([`ReplayWindow::accept`]), so that forged packets can never move the
//! window (RFC 4303: "the receive window is updated only if the integrity
//! verification succeeds").
//!
//! With ESN, only the low 32 bits travel in the ESP header; the high bits
//! are inferred from the window position (RFC 4303 Appendix A2.2) and fed
//! to the ICV, so a wrong guess fails authentication.

/// Smallest window allowed (RFC 4303: "a minimum window size of 32 packets
/// MUST be supported"); AWS allows 64 to 2048.
pub const MIN_WINDOW: u32 = 32;
/// Largest window this implementation accepts.
pub const MAX_WINDOW: u32 = 1 << 16;
/// AWS's default.
pub const DEFAULT_WINDOW: u32 = 1024;

/// Why a sequence number was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Already received.
    Duplicate,
    /// Older than the window.
    TooOld,
    /// Sequence number 0 is never sent (RFC 4303 3.3.3: the first packet is 1).
    Zero,
}

/// A sliding anti-replay window over 64-bit sequence numbers.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    size: u64,
    /// Highest sequence number accepted (0 = none yet).
    top: u64,
    /// Bit `i % bits` set when `top - d` was received, for d < size; stored as
    /// a ring indexed by sequence number modulo the bitmap length.
    bits: Vec<u64>,
    esn: bool,
}

impl ReplayWindow {
    /// A window of `size` packets (clamped to [`MIN_WINDOW`]..=[`MAX_WINDOW`]
    /// and rounded up to a multiple of 64); `esn` enables extended sequence
    /// numbers.
    pub fn new(size: u32, esn: bool) -> ReplayWindow {
        let size = size.clamp(MIN_WINDOW, MAX_WINDOW).div_ceil(64) * 64;
        // One spare word so that sliding never clears bits still in the window.
        let words = (size / 64) as usize + 1;
        ReplayWindow {
            size: u64::from(size),
            top: 0,
            bits: vec![0; words],
            esn,
        }
    }

    /// The window size in packets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The highest sequence number accepted so far.
    pub fn highest(&self) -> u64 {
        self.top
    }

    fn ring_bits(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    fn bit(&self, seq: u64) -> bool {
        let i = seq % self.ring_bits();
        self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, seq: u64) {
        let i = seq % self.ring_bits();
        self.bits[(i / 64) as usize] |= 1 << (i % 64);
    }

    /// The full 64-bit sequence number for the 32 low bits seen on the wire
    /// (the identity without ESN).
    pub fn infer(&self, low: u32) -> u64 {
        if !self.esn {
            return u64::from(low);
        }
        // RFC 4303 Appendix A2.2.
        let tl = self.top as u32;
        let th = self.top >> 32;
        let w = self.size;
        let low64 = u64::from(low);
        if u64::from(tl) >= w - 1 {
            // Case A: the window does not span a 2^32 boundary.
            if low64 >= u64::from(tl) - (w - 1) {
                (th << 32) | low64
            } else {
                ((th + 1) << 32) | low64
            }
        } else {
            // Case B: the window spans the boundary.
            let bottom = (u64::from(tl).wrapping_sub(w - 1)) & 0xffff_ffff;
            if low64 >= bottom && th > 0 {
                ((th - 1) << 32) | low64
            } else {
                (th << 32) | low64
            }
        }
    }

    /// Whether `seq` may be new; call before the ICV check.
    pub fn check(&self, seq: u64) -> Result<(), Replay> {
        if seq == 0 {
            return Err(Replay::Zero);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= self.size {
            return Err(Replay::TooOld);
        }
        if self.bit(seq) {
            return Err(Replay::Duplicate);
        }
        Ok(())
    }

    /// Records `seq` after its ICV verified; re-checks so that a packet that
    /// raced with its duplicate is refused once.
    pub fn accept(&mut self, seq: u64) -> Result<(), Replay> {
        self.check(seq)?;
        if seq > self.top {
            let shift = seq - self.top;
            if shift >= self.ring_bits() {
                self.bits.iter_mut().for_each(|w| *w = 0);
            } else {
                // Clear the bits of the numbers entering the window.
                for s in self.top + 1..=seq {
                    let i = s % self.ring_bits();
                    self.bits[(i / 64) as usize] &= !(1 << (i % 64));
                }
            }
            self.top = seq;
        }
        self.set(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_duplicates() {
        let mut w = ReplayWindow::new(64, false);
        for s in 1..=200 {
            assert_eq!(w.accept(s), Ok(()));
        }
        assert_eq!(w.check(200), Err(Replay::Duplicate));
        assert_eq!(w.check(137), Err(Replay::Duplicate));
        assert_eq!(w.check(136), Err(Replay::TooOld));
        assert_eq!(w.check(0), Err(Replay::Zero));
        assert_eq!(w.check(201), Ok(()));
    }

    #[test]
    fn out_of_order_within_the_window() {
        let mut w = ReplayWindow::new(1024, false);
        assert_eq!(w.accept(1000), Ok(()));
        assert_eq!(w.accept(10), Ok(()), "1000 - 10 < 1024");
        assert_eq!(w.accept(10), Err(Replay::Duplicate));
        assert_eq!(w.accept(999), Ok(()));
        assert_eq!(w.accept(2030), Ok(()));
        assert_eq!(w.check(1006), Err(Replay::TooOld), "2030 - 1006 = 1024");
        assert_eq!(w.check(1007), Ok(()));
        assert_eq!(w.check(999), Err(Replay::TooOld));
    }

    #[test]
    fn check_alone_does_not_move_the_window() {
        let mut w = ReplayWindow::new(64, false);
        w.accept(5).unwrap();
        assert_eq!(w.check(1_000_000), Ok(()));
        assert_eq!(w.highest(), 5);
        assert_eq!(w.accept(4), Ok(()));
    }

    #[test]
    fn big_jump_clears_everything() {
        let mut w = ReplayWindow::new(128, false);
        for s in 1..=128 {
            w.accept(s).unwrap();
        }
        w.accept(100_000).unwrap();
        for s in 100_000 - 127..100_000 {
            assert_eq!(w.check(s), Ok(()), "{s} was never received");
        }
    }

    #[test]
    fn slide_by_less_than_the_ring_clears_entering_bits() {
        let mut w = ReplayWindow::new(64, false);
        // Fill 1..=128, which wraps the 128-bit ring once.
        for s in 1..=128 {
            w.accept(s).unwrap();
        }
        w.accept(160).unwrap();
        for s in 129..160 {
            assert_eq!(w.check(s), Ok(()), "{s} must not look received");
        }
        assert_eq!(w.check(128), Err(Replay::Duplicate));
    }

    #[test]
    fn sizes_are_clamped_and_rounded() {
        assert_eq!(ReplayWindow::new(0, false).size(), 64);
        assert_eq!(ReplayWindow::new(1000, false).size(), 1024);
        assert_eq!(
            ReplayWindow::new(u32::MAX, false).size(),
            u64::from(MAX_WINDOW)
        );
    }

    #[test]
    fn esn_infers_the_high_bits() {
        let mut w = ReplayWindow::new(64, true);
        let near = (1u64 << 32) - 10;
        w.accept(near).unwrap();
        // The counter wrapped on the sender: low 5 means 2^32 + 5.
        assert_eq!(w.infer(5), (1 << 32) + 5);
        // A late packet from before the wrap.
        assert_eq!(w.infer(near as u32 - 3), near - 3);
        w.accept((1 << 32) + 5).unwrap();
        // Now the window spans the boundary: a low value near 2^32 is the old epoch.
        assert_eq!(w.infer(u32::MAX - 2), (1u64 << 32) - 3);
        assert_eq!(w.infer(6), (1 << 32) + 6);
        // Without ESN the wire value is the sequence number.
        assert_eq!(ReplayWindow::new(64, false).infer(7), 7);
    }
}
