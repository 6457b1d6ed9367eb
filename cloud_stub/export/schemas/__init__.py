"""The Camtrap DP 1.0.2 profile and table schemas (MIT, see LICENSE.txt and SOURCE.txt)."""
