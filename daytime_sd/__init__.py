# SPDX-License-Identifier: MIT
"""daytime-sd: an RFC 867 Daytime service built for systemd socket activation."""

__version__ = "0.1.0"
