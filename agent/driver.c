/* SPDX-License-Identifier: MIT */
/*
 * driver.c — choosing a database driver by URL scheme (driver.h).
 */
#include "driver.h"

#include <string.h>

static const struct fp_db_driver *const drivers[] = {
        &fp_pg_driver,
        &fp_my_driver,
};

const struct fp_db_driver *fp_db_driver_for(const struct fp_url *url)
{
        for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
                if (url->scheme && strcmp(url->scheme, drivers[i]->name) == 0)
                        return drivers[i];
        return NULL;
}

void fp_db_drivers_restore_done(void)
{
        for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
                if (drivers[i]->restore_done)
                        drivers[i]->restore_done();
}
