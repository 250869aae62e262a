package dev.tributary.stack.registry;

import io.apicurio.common.apps.config.DynamicConfigPropertyList;
import java.util.List;
import javax.enterprise.context.ApplicationScoped;
import javax.enterprise.inject.Produces;

/**
 * Stands in for the build step of apicurio-common-app-components-config-index (its deployment
 * module is not on Maven Central), which would list the properties that can be changed at run
 * time through the admin API. None can here: every property keeps its configured value.
 */
@ApplicationScoped
public class DynamicConfigPropertyListProducer {
  @Produces
  @ApplicationScoped
  DynamicConfigPropertyList dynamicConfigPropertyList() {
    return new DynamicConfigPropertyList(List.of());
  }
}
