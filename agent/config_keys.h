/* SPDX-License-Identifier: MIT */
/*
 * config_keys.h — the keys of forkpoold's configuration file: for each
 * section ([forkpool], [pool NAME]) its keys and what sets each from its
 * value, and the state of a file being read that they write into
 * (config_ini.c reads the file; config.c sets a key from the command line).
 */
#ifndef FORKPOOL_CONFIG_KEYS_H
#define FORKPOOL_CONFIG_KEYS_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

/* Most keys in one section. */
#define CONFIG_MAX_KEYS 24

enum config_section {
        CONFIG_SECTION_NONE = 0,
        CONFIG_SECTION_FORKPOOL,
        CONFIG_SECTION_POOL,
};

/* A file being read (or, with only cfg and pool set, one key from the command line). */
struct config_loader {
        struct fp_config *cfg;
        const char *path;
        FILE *f;
        char *line; /* getline()'s buffer; may hold a password */
        size_t line_cap;
        int lineno; /* of the line last handed to inih */
        enum config_section section;
        struct fp_pool_config *pool;    /* the current [pool NAME] */
        int forkpool_line;              /* of [forkpool], 0 if not seen */
        int key_lines[CONFIG_MAX_KEYS]; /* where the current section set each key, or 0 */
        int error;                      /* the first error (negative errno), 0 if none */
        int error_line;
        char *err;
        size_t errlen;
};

/* What a key's value is: how config_key_set() parses it (config_values.h) and stores it. */
enum config_kind {
        CONFIG_KIND_CUSTOM,  /* the key's set() parses and stores it */
        CONFIG_KIND_BOOL,    /* a bool: true/yes/on/1 or false/no/off/0 */
        CONFIG_KIND_SECONDS, /* an int of milliseconds, from seconds >= 0 with up to 3 decimals */
        CONFIG_KIND_LIMIT,   /* an int >= 0, where 0 means no limit */
        CONFIG_KIND_USERS,   /* a list of users into uid_t[FP_CONFIG_MAX_IDS] */
        CONFIG_KIND_GROUPS,  /* a list of groups into gid_t[FP_CONFIG_MAX_IDS] */
};

/*
 * A key of a section: its name, its kind and where its value goes. A
 * [forkpool] key's value goes into struct fp_config, a [pool NAME] key's into
 * struct fp_pool_config, at offset; a USERS or GROUPS list's length is the
 * size_t at count_offset. A CUSTOM key has set() instead, which parses and
 * stores the value itself; the others leave set NULL.
 */
struct config_key {
        const char *name;
        enum config_kind kind;
        size_t offset;       /* not CUSTOM */
        size_t count_offset; /* USERS and GROUPS */
        /* CUSTOM: returns 0, or a negative errno with a reason (without the key) in reason. */
        int (*set)(struct config_loader *ld, const char *value, char *reason, size_t len);
};

/*
 * Records the first error of the reading as "PATH:LINE: message" (in ld->err,
 * ld->error, ld->error_line); later ones are dropped.
 */
void config_loader_fail(struct config_loader *ld, int line, int r, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/*
 * The key name of section (with its position among the section's keys in
 * *ret_index, if not NULL: an index into config_loader.key_lines), or NULL.
 */
const struct config_key *config_find_key(enum config_section section, const char *name,
                                         size_t *ret_index);

/*
 * Sets key, one of ld->section's keys, from value into ld->cfg ([forkpool])
 * or ld->pool ([pool NAME]). Returns 0, or a negative errno with a reason
 * (without the key) in reason (len bytes).
 */
int config_key_set(struct config_loader *ld, const struct config_key *key, const char *value,
                   char *reason, size_t len);

#endif /* FORKPOOL_CONFIG_KEYS_H */
