// libsystemd's D-Bus client (sd-bus): NetworkManager's and ModemManager's views of the network.
#include <systemd/sd-bus.h>
