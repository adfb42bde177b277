/* Health status names, as Consul's API spells them. */
#include "zone/zone.h"

#include <string.h>

static const char *const names[] = {
    [ZONE_HEALTH_PASSING] = "passing",
    [ZONE_HEALTH_WARNING] = "warning",
    [ZONE_HEALTH_CRITICAL] = "critical",
    [ZONE_HEALTH_MAINT] = "maintenance",
};

const char *zone_health_name(enum zone_health h)
{
    if ((unsigned)h >= BASE_ARRAY_LEN(names))
        return "critical"; /* an unknown status is treated as the worst that is real */
    return names[h];
}

int zone_health_parse(const char *s, enum zone_health *h)
{
    /* "maintenance" is how Consul shows a maintenance check, not a status one can set */
    for (int i = ZONE_HEALTH_PASSING; i <= ZONE_HEALTH_CRITICAL; i++) {
        if (strcmp(s, names[i]) == 0) {
            *h = (enum zone_health)i;
            return 0;
        }
    }
    return BASE_EINVAL;
}
