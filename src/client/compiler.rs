//! Finding and naming the real compiler: masquerade PATH trimming, the recursion safeguard and distcc 3.4's compiler-name rewriting.
