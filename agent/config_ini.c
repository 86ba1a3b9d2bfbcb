/* SPDX-License-Identifier: MIT */
/*
 * config_ini.c — reading forkpoold's configuration file (fp_config_load() of
 * config.h).
 *
 * libinih splits "key = value" lines; it reads the file through
 * config_reader(), which hands it one physical line at a time. That reader is
 * where this module gets what inih does not give:
 *
 *  - the line number of every error: the handler reads the reader's count;
 *  - section headers, parsed here: inih cuts section names at 49 characters
 *    and tells nobody about a section without keys, so neither a long pool
 *    name nor a [pool NAME] without its url could be reported otherwise;
 *  - indented keys: leading blanks are stripped, so an indented line is never
 *    taken for the continuation of a multi-line value (which we do not want);
 *  - an error for a line longer than inih's buffer, which inih would split
 *    into two lines silently.
 *
 * The first error stops the reading; it becomes the one line in err.
 */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "config_keys.h"
#include "config_values.h"

/* Checks the section that ends: a pool needs its url. */
static void loader_end_section(struct config_loader *ld)
{
        if (ld->section == CONFIG_SECTION_POOL && !ld->pool->url_text)
                config_loader_fail(ld, ld->pool->line, -EINVAL,
                                   "url: missing in [pool %s] (required)", ld->pool->name);
        ld->section = CONFIG_SECTION_NONE;
        ld->pool = NULL;
        memset(ld->key_lines, 0, sizeof(ld->key_lines));
}

/* Handles a "[...]" line s (without leading blanks). Returns 0 or a negative errno. */
static int loader_section(struct config_loader *ld, char *s)
{
        char q[CONFIG_QUOTE_MAX + 4];
        char *close = strchr(s, ']');
        char *inner = s + 1, *after, *end;
        struct fp_config *cfg = ld->cfg;

        if (!close) {
                config_loader_fail(ld, ld->lineno, -EINVAL, "section header without ']'");
                return ld->error;
        }
        for (after = close + 1; config_is_blank(*after); after++)
                ;
        if (*after && *after != ';' && *after != '#') {
                config_loader_fail(ld, ld->lineno, -EINVAL, "unexpected text after ']'");
                return ld->error;
        }

        loader_end_section(ld);
        if (ld->error)
                return ld->error;

        /* Trim the name between the brackets (the line buffer is ours, not inih's). */
        while (config_is_blank(*inner))
                inner++;
        end = close;
        while (end > inner && config_is_blank(end[-1]))
                end--;
        *end = '\0';

        if (strcmp(inner, "forkpool") == 0) {
                if (ld->forkpool_line) {
                        config_loader_fail(ld, ld->lineno, -EINVAL,
                                           "duplicate section [forkpool] (first on line %d)",
                                           ld->forkpool_line);
                        return ld->error;
                }
                ld->forkpool_line = ld->lineno;
                ld->section = CONFIG_SECTION_FORKPOOL;
                return 0;
        }
        if (strncmp(inner, "pool", 4) == 0 && (inner[4] == '\0' || config_is_blank(inner[4]))) {
                const char *name = inner + 4;
                const struct fp_pool_config *other;

                while (config_is_blank(*name))
                        name++;
                if (!*name) {
                        config_loader_fail(ld, ld->lineno, -EINVAL,
                                           "missing pool name: write [pool NAME]");
                        return ld->error;
                }
                if (!config_pool_name_valid(name)) {
                        config_loader_fail(ld, ld->lineno, -EINVAL,
                                           "invalid pool name '%s' (" CONFIG_POOL_NAME_RULE ")",
                                           config_quote(name, q));
                        return ld->error;
                }
                other = fp_config_find_pool(cfg, name);
                if (other && other->line > 0) {
                        config_loader_fail(ld, ld->lineno, -EINVAL,
                                           "duplicate pool '%s' (first defined on line %d)", name,
                                           other->line);
                        return ld->error;
                }
                if (other) {
                        config_loader_fail(
                                ld, ld->lineno, -EINVAL,
                                "duplicate pool '%s' (already defined on the command line)", name);
                        return ld->error;
                }
                if (cfg->n_pools == FP_SHM_MAX_POOLS) {
                        config_loader_fail(ld, ld->lineno, -E2BIG, "too many pools (at most %d)",
                                           FP_SHM_MAX_POOLS);
                        return ld->error;
                }
                ld->pool = &cfg->pools[cfg->n_pools++];
                fp_pool_config_defaults(ld->pool, name, ld->lineno);
                ld->section = CONFIG_SECTION_POOL;
                return 0;
        }
        config_loader_fail(ld, ld->lineno, -EINVAL,
                           "unknown section [%s] (expected [forkpool] or [pool NAME])",
                           config_quote(inner, q));
        return ld->error;
}

/*
 * inih's reader: the next physical line, without leading blanks (and without
 * the UTF-8 byte order mark on line 1). Returns NULL at the end of the file
 * and after an error, wiping inih's line buffer then.
 */
static char *config_reader(char *str, int num, void *stream)
{
        struct config_loader *ld = stream;
        char *s;
        ssize_t n;
        size_t len;

        if (ld->error)
                goto stop;
        errno = 0;
        n = getline(&ld->line, &ld->line_cap, ld->f);
        if (n < 0) {
                if (ferror(ld->f))
                        config_loader_fail(ld, ld->lineno + 1, errno ? -errno : -EIO,
                                           "read error: %s", strerror(errno ? errno : EIO));
                goto stop;
        }
        ld->lineno++;
        s = ld->line;
        if (n > 0 && s[n - 1] == '\n')
                s[n - 1] = '\0';
        if (ld->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
                s += 3;
        while (config_is_blank(*s))
                s++;
        if (*s == ';' || *s == '#') {
                str[0] = '\0';
                return str;
        }
        if (*s == '[') {
                if (loader_section(ld, s) < 0)
                        goto stop;
                /* Parsed here; inih's idea of the section is not used. */
                str[0] = '\0';
                return str;
        }
        len = strlen(s);
        if (num <= 0 || len >= (size_t)num) {
                config_loader_fail(ld, ld->lineno, -EINVAL,
                                   "line too long (more than %d characters)",
                                   num > 0 ? num - 1 : 0);
                goto stop;
        }
        memcpy(str, s, len + 1);
        return str;

stop:
        if (num > 0)
                explicit_bzero(str, (size_t)num);
        return NULL;
}

/* inih's handler: one key = value of the current section (inih's section is ignored). */
static int config_handler(void *user, const char *section, const char *name, const char *value)
{
        struct config_loader *ld = user;
        char where[FP_SHM_POOL_NAME_MAX + 16];
        char reason[FP_CONFIG_ERR_MAX];
        char q[CONFIG_QUOTE_MAX + 4];
        int r;

        (void)section;
        if (ld->error)
                return 0;
        switch (ld->section) {
        case CONFIG_SECTION_FORKPOOL:
                snprintf(where, sizeof(where), "[forkpool]");
                break;
        case CONFIG_SECTION_POOL:
                snprintf(where, sizeof(where), "[pool %s]", ld->pool->name);
                break;
        default:
                config_loader_fail(ld, ld->lineno, -EINVAL,
                                   "%s: outside any section (start with [forkpool] or [pool NAME])",
                                   config_quote(name, q));
                return 0;
        }

        size_t i;
        const struct config_key *key = config_find_key(ld->section, name, &i);
        if (key) {
                if (ld->key_lines[i]) {
                        config_loader_fail(ld, ld->lineno, -EINVAL,
                                           "%s: set twice in %s (first on line %d)", name, where,
                                           ld->key_lines[i]);
                        return 0;
                }
                ld->key_lines[i] = ld->lineno;
                reason[0] = '\0';
                r = config_key_set(ld, key, value, reason, sizeof(reason));
                if (r < 0) {
                        config_loader_fail(ld, ld->lineno, r, "%s: %s", name, reason);
                        return 0;
                }
                return 1;
        }
        config_loader_fail(ld, ld->lineno, -EINVAL, "unknown key '%s' in %s", config_quote(name, q),
                           where);
        return 0;
}

/*
 * A file that holds a password must not be readable by everyone: refused
 * (not merely warned about), since anyone on the host could read it.
 */
static void config_check_secret_mode(struct config_loader *ld)
{
        struct stat st;

        if (fstat(fileno(ld->f), &st) < 0 || !(st.st_mode & S_IROTH))
                return;
        for (size_t i = 0; i < ld->cfg->n_pools; i++)
                if (ld->cfg->pools[i].url.password) {
                        config_loader_fail(
                                ld, ld->cfg->pools[i].line, -EPERM,
                                "url: holds a password, but the file is readable by everyone "
                                "(mode %04o): chmod o-r it",
                                (unsigned)(st.st_mode & 07777));
                        return;
                }
}

int fp_config_load(struct fp_config *cfg, const char *path, char *err, size_t errlen)
{
        struct config_loader ld = {
                .cfg = cfg,
                .path = path,
                .err = err,
                .errlen = errlen,
        };
        int r;

        if (err && errlen > 0)
                err[0] = '\0';
        if (!path) {
                config_err(err, errlen, "no configuration file given");
                fp_config_free(cfg);
                return -EINVAL;
        }
        free(cfg->path);
        cfg->path = strdup(path);
        if (!cfg->path) {
                config_err(err, errlen, "%s: out of memory", path);
                fp_config_free(cfg);
                return -ENOMEM;
        }
        ld.f = fopen(path, "re");
        if (!ld.f) {
                r = -errno;
                config_err(err, errlen, "%s: cannot open: %s", path, strerror(-r));
                fp_config_free(cfg);
                return r;
        }

        r = ini_parse_stream(config_reader, &ld, config_handler, &ld);
        if (r > 0 && (!ld.error || r < ld.error_line)) {
                /* A line inih could not split, before any error of ours. */
                ld.error = 0;
                config_loader_fail(
                        &ld, r, -EINVAL,
                        "syntax error: expected 'key = value', '[section]' or a comment");
        } else if (r < 0 && !ld.error) {
                config_loader_fail(&ld, ld.lineno, r == -2 ? -ENOMEM : -EIO,
                                   "cannot parse the file (inih error %d)", r);
        }
        if (!ld.error)
                loader_end_section(&ld);
        if (!ld.error)
                config_check_secret_mode(&ld);

        fclose(ld.f);
        if (ld.line) {
                explicit_bzero(ld.line, ld.line_cap);
                free(ld.line);
        }
        if (ld.error) {
                fp_config_free(cfg);
                return ld.error;
        }
        return 0;
}
