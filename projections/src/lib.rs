//! Read models folded from the log; each rebuildable from seq 1 to identical bytes. The
//! projections themselves arrive with the projections issue (see docs/status.md).
