/* SPDX-License-Identifier: MIT */
/*
 * fake_libpq.c — a stand-in for a libpq that lacks most of libpq's symbols
 * (an older or a trimmed build): it_dropin loads the drop-in in front of it
 * and checks that a missing symbol is a clear error, not a crash.
 */
int PQlibVersion(void);

int PQlibVersion(void)
{
        return 150042;
}
