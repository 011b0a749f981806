#!/usr/bin/python3
"""NetworkManager and ModemManager as Barge reads them, on a test's own D-Bus daemon.

Exports, each on a connection of its own (as the real services are):
  org.freedesktop.NetworkManager   /org/freedesktop/NetworkManager  GetDevices(), DeviceAdded/DeviceRemoved;
                                   /org/freedesktop/NetworkManager/Devices/N  Device.{Interface,IpInterface,Metered}
  org.freedesktop.ModemManager1    /org/freedesktop/ModemManager1   ObjectManager.GetManagedObjects(),
                                   InterfacesAdded/InterfacesRemoved;
                                   /org/freedesktop/ModemManager1/Modem/N  Modem.Ports, Modem3gpp.RegistrationState
Properties changes are signalled with org.freedesktop.DBus.Properties.PropertiesChanged, as the real services do.

The test drives it through org.barge.TestDesktop at /control (dbus-send --print-reply returns once the signal is
sent): AddDevice(s interface, s ip_interface, u metered), SetMetered(s interface, u metered),
AddModem(s port, u registration), SetRegistration(s port, u registration), SetSignalQuality(s port, u percent),
StopNetworkManager() (its name leaves the bus), StartNetworkManager().

Usage: desktop-bus.py --address unix:path=… --ready FILE   (FILE is written once every name is owned)
"""
import argparse
import os
import sys
import time

import dbus
import dbus.bus
import dbus.service
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

PROPS = "org.freedesktop.DBus.Properties"
NM = "org.freedesktop.NetworkManager"
NM_DEVICE = "org.freedesktop.NetworkManager.Device"
MM = "org.freedesktop.ModemManager1"
MM_MODEM = "org.freedesktop.ModemManager1.Modem"
MM_3GPP = "org.freedesktop.ModemManager1.Modem.Modem3gpp"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"


class PropertiesObject(dbus.service.Object):
    """An object whose properties are a dict per interface, with Get/GetAll/PropertiesChanged."""

    def __init__(self, connection, path, properties):
        super().__init__(connection, path)
        self.properties = properties

    @dbus.service.method(PROPS, in_signature="ss", out_signature="v")
    def Get(self, interface, name):
        return self.properties[interface][name]

    @dbus.service.method(PROPS, in_signature="s", out_signature="a{sv}")
    def GetAll(self, interface):
        return dbus.Dictionary(self.properties.get(interface, {}), signature="sv")

    @dbus.service.signal(PROPS, signature="sa{sv}as")
    def PropertiesChanged(self, interface, changed, invalidated):
        pass

    def set(self, interface, name, value):
        self.properties[interface][name] = value
        self.PropertiesChanged(interface, dbus.Dictionary({name: value}, signature="sv"), dbus.Array([], signature="s"))


class NetworkManager(dbus.service.Object):
    def __init__(self, connection):
        super().__init__(connection, "/org/freedesktop/NetworkManager")
        self.bus = connection
        self.devices = {}  # interface -> PropertiesObject

    @dbus.service.method(NM, in_signature="", out_signature="ao")
    def GetDevices(self):
        return dbus.Array([device.__dbus_object_path__ for device in self.devices.values()], signature="o")

    @dbus.service.signal(NM, signature="o")
    def DeviceAdded(self, path):
        pass

    def add(self, interface, ip_interface, metered):
        path = "/org/freedesktop/NetworkManager/Devices/%d" % (len(self.devices) + 1)
        self.devices[interface] = PropertiesObject(self.bus, path, {
            NM_DEVICE: {
                "Interface": dbus.String(interface),
                "IpInterface": dbus.String(ip_interface),
                "Metered": dbus.UInt32(metered),
                "State": dbus.UInt32(100),
            }
        })
        self.DeviceAdded(dbus.ObjectPath(path))


class ModemManager(dbus.service.Object):
    def __init__(self, connection):
        super().__init__(connection, "/org/freedesktop/ModemManager1")
        self.bus = connection
        self.modems = {}  # port -> PropertiesObject

    @dbus.service.method(OBJECT_MANAGER, in_signature="", out_signature="a{oa{sa{sv}}}")
    def GetManagedObjects(self):
        return dbus.Dictionary({
            modem.__dbus_object_path__: dbus.Dictionary({
                interface: dbus.Dictionary(values, signature="sv") for interface, values in modem.properties.items()
            }, signature="sa{sv}")
            for modem in self.modems.values()
        }, signature="oa{sa{sv}}")

    @dbus.service.signal(OBJECT_MANAGER, signature="oa{sa{sv}}")
    def InterfacesAdded(self, path, interfaces):
        pass

    def add(self, port, registration):
        path = "/org/freedesktop/ModemManager1/Modem/%d" % len(self.modems)
        properties = {
            MM_MODEM: {
                # The control port (type 6, QMI) beside the network interface (type 2, net).
                "Ports": dbus.Array([dbus.Struct(("cdc-wdm%d" % len(self.modems), dbus.UInt32(6))),
                                     dbus.Struct((port, dbus.UInt32(2)))], signature="(su)"),
                "SignalQuality": dbus.Struct((dbus.UInt32(50), dbus.Boolean(True))),
            },
            MM_3GPP: {"RegistrationState": dbus.UInt32(registration)},
        }
        modem = PropertiesObject(self.bus, path, properties)
        self.modems[port] = modem
        self.InterfacesAdded(dbus.ObjectPath(path), dbus.Dictionary({
            interface: dbus.Dictionary(values, signature="sv") for interface, values in properties.items()
        }, signature="sa{sv}"))


class Control(dbus.service.Object):
    def __init__(self, connection, nm, mm, nm_connection):
        super().__init__(connection, "/control")
        self.nm = nm
        self.mm = mm
        self.nm_connection = nm_connection

    @dbus.service.method("org.barge.TestDesktop", in_signature="", out_signature="")
    def StopNetworkManager(self):
        # NetworkManager leaves the bus (as when it stops or restarts); its objects stay exported on its connection.
        self.nm_connection.release_name(NM)

    @dbus.service.method("org.barge.TestDesktop", in_signature="", out_signature="")
    def StartNetworkManager(self):
        self.nm_connection.request_name(NM)

    @dbus.service.method("org.barge.TestDesktop", in_signature="ssu", out_signature="")
    def AddDevice(self, interface, ip_interface, metered):
        self.nm.add(str(interface), str(ip_interface), int(metered))

    @dbus.service.method("org.barge.TestDesktop", in_signature="su", out_signature="")
    def SetMetered(self, interface, metered):
        self.nm.devices[str(interface)].set(NM_DEVICE, "Metered", dbus.UInt32(metered))

    @dbus.service.method("org.barge.TestDesktop", in_signature="su", out_signature="")
    def AddModem(self, port, registration):
        self.mm.add(str(port), int(registration))

    @dbus.service.method("org.barge.TestDesktop", in_signature="su", out_signature="")
    def SetRegistration(self, port, registration):
        self.mm.modems[str(port)].set(MM_3GPP, "RegistrationState", dbus.UInt32(registration))

    @dbus.service.method("org.barge.TestDesktop", in_signature="su", out_signature="")
    def SetSignalQuality(self, port, percent):
        self.mm.modems[str(port)].set(MM_MODEM, "SignalQuality", dbus.Struct((dbus.UInt32(percent), dbus.Boolean(True))))


def connect(address):
    deadline = time.monotonic() + 10
    while True:
        try:
            connection = dbus.bus.BusConnection(address)
            return connection
        except dbus.exceptions.DBusException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--ready", required=True)
    arguments = parser.parse_args()
    DBusGMainLoop(set_as_default=True)
    nm_connection = connect(arguments.address)
    mm_connection = connect(arguments.address)
    control_connection = connect(arguments.address)
    names = [dbus.service.BusName(NM, nm_connection), dbus.service.BusName(MM, mm_connection),
             dbus.service.BusName("org.barge.TestDesktop", control_connection)]
    nm = NetworkManager(nm_connection)
    mm = ModemManager(mm_connection)
    Control(control_connection, nm, mm, nm_connection)
    with open(arguments.ready + ".tmp", "w") as ready:
        ready.write("%d\n" % os.getpid())
    os.rename(arguments.ready + ".tmp", arguments.ready)
    GLib.MainLoop().run()  # the names stay owned while `names` holds them


if __name__ == "__main__":
    sys.exit(main())
