/* Tests resolver/acl.c: CIDR parsing (IPv4, IPv6, bare addresses, refusals), matching of IPv4,
 * IPv6 and v4-mapped client addresses, the default allow list, and the recursor address
 * syntax turned into libunbound's ADDR@PORT. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "resolver/resolver.h"

static struct sockaddr_storage v4(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    sin6->sin6_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
    return ss;
}

static bool in(const struct rsv_cidr *nets, size_t n, struct sockaddr_storage ss)
{
    return rsv_cidr_match(nets, n, (const struct sockaddr *)&ss);
}

static void test_cidr_parse(void **state)
{
    struct rsv_cidr c;
    (void)state;

    assert_int_equal(rsv_cidr_parse("10.0.0.0/8", &c), 0);
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 10);
    assert_int_equal(rsv_cidr_parse("192.0.2.7", &c), 0);
    assert_int_equal(c.prefix, 32);
    assert_int_equal(rsv_cidr_parse("0.0.0.0/0", &c), 0);
    assert_int_equal(c.prefix, 0);
    assert_int_equal(rsv_cidr_parse("fd00::/8", &c), 0);
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(rsv_cidr_parse("::1", &c), 0);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(rsv_cidr_parse("172.16.0.0/12", &c), 0);

    const char *bad[] = {
        "",       "10.0.0.0/33", "10.1.0.0/8",  "10.0.0.0/",   "10.0.0.0/x",  "10.0.0/8",
        "::/129", "fe80::1/10",  "example.org", "10.0.0.0/-1", "10.0.0.0/8/8"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(rsv_cidr_parse(bad[i], &c), BASE_EINVAL);
    assert_int_equal(rsv_cidr_parse(NULL, &c), BASE_EINVAL);
}

static void test_cidr_match(void **state)
{
    struct rsv_cidr nets[3];
    (void)state;

    assert_int_equal(rsv_cidr_parse("10.0.0.0/8", &nets[0]), 0);
    assert_int_equal(rsv_cidr_parse("192.168.1.128/25", &nets[1]), 0);
    assert_int_equal(rsv_cidr_parse("2001:db8::/32", &nets[2]), 0);
    assert_true(in(nets, 3, v4("10.255.1.2")));
    assert_false(in(nets, 3, v4("11.0.0.1")));
    assert_true(in(nets, 3, v4("192.168.1.200")));
    assert_false(in(nets, 3, v4("192.168.1.127")));
    assert_true(in(nets, 3, v6("2001:db8:1::5")));
    assert_false(in(nets, 3, v6("2001:db9::5")));
    /* a v4-mapped client address is its IPv4 address */
    assert_true(in(nets, 3, v6("::ffff:10.1.2.3")));
    assert_false(in(nets, 3, v6("::ffff:11.1.2.3")));
    /* an IPv4 network never matches a plain IPv6 address, nor the reverse */
    assert_false(in(nets, 3, v6("::a01:203")));
    assert_false(in(nets, 0, v4("10.0.0.1")));
    assert_false(rsv_cidr_match(nets, 3, NULL));
    struct rsv_cidr all;
    assert_int_equal(rsv_cidr_parse("0.0.0.0/0", &all), 0);
    assert_true(in(&all, 1, v4("203.0.113.9")));
}

static void test_defaults(void **state)
{
    size_t n;
    const struct rsv_cidr *d = rsv_cidr_defaults(&n);
    (void)state;

    assert_true(n >= 8);
    const char *yes[] = {"127.0.0.1",      "127.5.6.7",   "10.1.2.3",   "172.16.0.1",
                         "172.31.255.255", "192.168.0.1", "169.254.1.1"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        assert_true(in(d, n, v4(yes[i])));
    const char *no[] = {"8.8.8.8", "172.32.0.1", "192.169.0.1", "100.64.0.1", "203.0.113.5"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        assert_false(in(d, n, v4(no[i])));
    assert_true(in(d, n, v6("::1")));
    assert_true(in(d, n, v6("fd12:3456::1")));
    assert_true(in(d, n, v6("fc00::1")));
    assert_true(in(d, n, v6("fe80::1")));
    assert_true(in(d, n, v6("::ffff:192.168.1.1")));
    assert_false(in(d, n, v6("2001:db8::1")));
    assert_false(in(d, n, v6("::2")));
}

static void test_recursor_parse(void **state)
{
    char out[80];
    (void)state;

    const char *ok[][2] = {
        {"10.0.0.2", "10.0.0.2@53"},
        {"10.0.0.2:5353", "10.0.0.2@5353"},
        {"::1", "::1@53"},
        {"[::1]", "::1@53"},
        {"[2001:db8::1]:54", "2001:db8::1@54"},
        {"127.0.0.1:1", "127.0.0.1@1"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        assert_int_equal(rsv_recursor_parse(ok[i][0], out, sizeof out), 0);
        assert_string_equal(out, ok[i][1]);
    }
    const char *bad[] = {
        "",     "dns.example", "10.0.0.2:",     "10.0.0.2:0", "10.0.0.2:65536", "10.0.0.2:53x",
        "[::1", "[::1]x",      "[10.0.0.1]:53", "10.0.0.256", "1.2.3.4:5:6"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(rsv_recursor_parse(bad[i], out, sizeof out), BASE_EINVAL);
    assert_int_equal(rsv_recursor_parse("10.0.0.2", out, 8), BASE_EINVAL); /* too small */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_parse),
        cmocka_unit_test(test_cidr_match),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_recursor_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
