#!/bin/bash
#
# devstack plugin of nova-vmi: `enable_plugin nova-vmi <url>` in local.conf.
#
# stack install      install the package (and its openstack CLI plugin)
# stack post-config  database, keystone user/service/endpoint, nova-vmi.conf,
#                    vmi-agent.conf, nova.conf (filter, file-backed memory,
#                    notifications)
# stack extra        start the API (uwsgi), the listener and the agent;
#                    create the VMI aggregate with this compute host
# unstack            stop them
# clean              remove configuration and state

# Save trace setting
_XTRACE_NOVA_VMI=$(set +o | grep xtrace)
set -o xtrace

NOVA_VMI_BIN_DIR=$(get_python_exec_prefix)

function nova_vmi_service_url {
    local host_port
    host_port=$NOVA_VMI_SERVICE_HOST:$NOVA_VMI_SERVICE_PORT
    echo "$NOVA_VMI_SERVICE_PROTOCOL://$host_port"
}

function install_nova_vmi {
    setup_develop $NOVA_VMI_DIR
}

function create_nova_vmi_accounts {
    create_service_user "nova-vmi" "admin"
    get_or_create_service "nova-vmi" "introspection" \
        "Virtual machine introspection"
    get_or_create_endpoint "introspection" "$REGION_NAME" \
        "$(nova_vmi_service_url)"
}

function configure_nova_vmi_api {
    sudo install -d -o $STACK_USER $NOVA_VMI_CONF_DIR
    cp $NOVA_VMI_DIR/etc/nova-vmi/api-paste.ini $NOVA_VMI_CONF_DIR/
    rm -f $NOVA_VMI_CONF
    iniset $NOVA_VMI_CONF DEFAULT debug $ENABLE_DEBUG_LOG_LEVEL
    iniset $NOVA_VMI_CONF DEFAULT transport_url $(get_transport_url)
    iniset $NOVA_VMI_CONF database connection \
        $(database_connection_url nova_vmi)
    iniset $NOVA_VMI_CONF api auth_strategy keystone
    configure_keystone_authtoken_middleware $NOVA_VMI_CONF nova-vmi
    # Nova decides who may see an instance and where it runs.
    iniset $NOVA_VMI_CONF nova auth_type password
    iniset $NOVA_VMI_CONF nova auth_url $KEYSTONE_SERVICE_URI
    iniset $NOVA_VMI_CONF nova username nova-vmi
    iniset $NOVA_VMI_CONF nova password $SERVICE_PASSWORD
    iniset $NOVA_VMI_CONF nova user_domain_name $SERVICE_DOMAIN_NAME
    iniset $NOVA_VMI_CONF nova project_name $SERVICE_PROJECT_NAME
    iniset $NOVA_VMI_CONF nova project_domain_name $SERVICE_DOMAIN_NAME
    iniset $NOVA_VMI_CONF nova region_name $REGION_NAME
    write_uwsgi_config "$NOVA_VMI_UWSGI_CONF" "$NOVA_VMI_UWSGI_APP" "" \
        "$NOVA_VMI_SERVICE_HOST:$NOVA_VMI_SERVICE_PORT" "nova-vmi-api"
}

function configure_vmi_agent {
    sudo install -d -o $STACK_USER $VMI_AGENT_CONF_DIR
    sudo install -d $VMI_AGENT_STATE_DIR
    rm -f $VMI_AGENT_CONF
    iniset $VMI_AGENT_CONF DEFAULT debug $ENABLE_DEBUG_LOG_LEVEL
    iniset $VMI_AGENT_CONF DEFAULT transport_url $(get_transport_url)
    iniset $VMI_AGENT_CONF agent driver qemu
    iniset $VMI_AGENT_CONF agent state_dir $VMI_AGENT_STATE_DIR
    iniset $VMI_AGENT_CONF qemu libvirt_uri qemu:///system
}

function init_nova_vmi_database {
    recreate_database nova_vmi
    $NOVA_VMI_BIN_DIR/nova-vmi-manage --config-file $NOVA_VMI_CONF db sync
}

function _nova_vmi_add_filter {
    local filters
    filters=$(iniget $NOVA_CONF filter_scheduler enabled_filters)
    if [[ ",$filters," != *",$NOVA_VMI_FILTER,"* ]]; then
        filters=${filters:+$filters,}$NOVA_VMI_FILTER
        iniset $NOVA_CONF filter_scheduler enabled_filters "$filters"
    fi
    # available_filters is multi-valued: keep Nova's own filters too.
    local available
    available=$(iniget_multiline $NOVA_CONF filter_scheduler \
        available_filters)
    if [[ -z "$available" ]]; then
        iniadd $NOVA_CONF filter_scheduler available_filters \
            nova.scheduler.filters.all_filters
    fi
    if [[ "$available" != *"$NOVA_VMI_FILTER_CLASS"* ]]; then
        iniadd $NOVA_CONF filter_scheduler available_filters \
            $NOVA_VMI_FILTER_CLASS
    fi
}

function configure_nova_for_vmi {
    if is_service_enabled n-sch; then
        _nova_vmi_add_filter
    fi
    # Versioned notifications of instance changes on the message bus.
    iniset $NOVA_CONF notifications notification_format both
    iniset $NOVA_CONF notifications notify_on_state_change vm_and_task_state
    iniset $NOVA_CONF oslo_messaging_notifications driver messagingv2
    if is_service_enabled n-cpu; then
        # Guest RAM in files the agent can read ([libvirt]
        # file_backed_memory needs ram_allocation_ratio 1.0).
        iniset $NOVA_CPU_CONF libvirt file_backed_memory \
            $NOVA_VMI_FILE_BACKED_MEMORY
        iniset $NOVA_CPU_CONF DEFAULT ram_allocation_ratio 1.0
        sudo install -d $NOVA_VMI_MEMORY_BACKING_DIR
        local qemu_conf=/etc/libvirt/qemu.conf
        if ! sudo grep -q '^memory_backing_dir' $qemu_conf; then
            echo "memory_backing_dir = \"$NOVA_VMI_MEMORY_BACKING_DIR\"" \
                | sudo tee -a $qemu_conf
            restart_service libvirtd
        fi
    fi
}

function create_nova_vmi_aggregate {
    local host
    host=$(hostname)
    if ! openstack aggregate show $NOVA_VMI_AGGREGATE >/dev/null 2>&1; then
        openstack aggregate create --property vmi_enabled=true \
            $NOVA_VMI_AGGREGATE
    fi
    if is_service_enabled n-cpu; then
        wait_for_compute $SERVICE_TIMEOUT
        openstack aggregate add host $NOVA_VMI_AGGREGATE $host || true
    fi
}

function start_nova_vmi {
    local uwsgi
    uwsgi="$(which uwsgi) --procname-prefix nova-vmi-api"
    run_process nova-vmi-api "$uwsgi --ini $NOVA_VMI_UWSGI_CONF"
    run_process nova-vmi-listener \
        "$NOVA_VMI_BIN_DIR/nova-vmi-listener --config-file $NOVA_VMI_CONF"
    # The agent reads guest RAM and QMP sockets that belong to libvirt.
    run_process vmi-agent \
        "$NOVA_VMI_BIN_DIR/vmi-agent --config-file $VMI_AGENT_CONF" "" root
}

function stop_nova_vmi {
    local service
    for service in nova-vmi-api nova-vmi-listener vmi-agent; do
        stop_process $service
    done
}

function cleanup_nova_vmi {
    remove_uwsgi_config "$NOVA_VMI_UWSGI_CONF" "nova-vmi-api"
    sudo rm -rf $NOVA_VMI_CONF_DIR $VMI_AGENT_CONF_DIR $VMI_AGENT_STATE_DIR
}

if [[ "$1" == "stack" && "$2" == "install" ]]; then
    echo_summary "Installing nova-vmi"
    install_nova_vmi
elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
    echo_summary "Configuring nova-vmi"
    if is_service_enabled nova-vmi-api nova-vmi-listener; then
        create_nova_vmi_accounts
        configure_nova_vmi_api
        init_nova_vmi_database
    fi
    if is_service_enabled vmi-agent; then
        configure_vmi_agent
    fi
    configure_nova_for_vmi
elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
    echo_summary "Starting nova-vmi"
    start_nova_vmi
    if is_service_enabled nova-vmi-api; then
        create_nova_vmi_aggregate
    fi
fi

if [[ "$1" == "unstack" ]]; then
    stop_nova_vmi
fi

if [[ "$1" == "clean" ]]; then
    cleanup_nova_vmi
fi

# Restore xtrace
$_XTRACE_NOVA_VMI
