//! Backend address resolution (in progress).
