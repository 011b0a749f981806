// libnl-3 and libnl-route-3: the cache manager for links, addresses, routes and neighbours (the network monitor).
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <netlink/msg.h>
#include <netlink/cache.h>
#include <netlink/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/addr.h>
#include <netlink/route/route.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/neighbour.h>
#include <linux/rtnetlink.h>
#include <linux/if_arp.h>
