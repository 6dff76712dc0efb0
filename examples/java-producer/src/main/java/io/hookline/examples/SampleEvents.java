package io.hookline.examples;

import io.hookline.events.Cancellation;
import io.hookline.events.CancellationReason;
import io.hookline.events.Contact;
import io.hookline.events.ContactCreated;
import io.hookline.events.ContactField;
import io.hookline.events.ContactOptIn;
import io.hookline.events.ContactTagAdded;
import io.hookline.events.ContactTagRemoved;
import io.hookline.events.Customer;
import io.hookline.events.Event;
import io.hookline.events.EventType;
import io.hookline.events.Funnel;
import io.hookline.events.FunnelStep;
import io.hookline.events.Order;
import io.hookline.events.PricePlan;
import io.hookline.events.PricePlanType;
import io.hookline.events.SaleCanceled;
import io.hookline.events.SaleNew;
import io.hookline.events.Tag;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * One event of each of the six kinds (docs/architecture.md §1), built with the classes Avro generates
 * from schemas/Event.avsc. The envelope names the branch of the payload union: {@code type} SALE_NEW
 * carries a {@code SaleNew} payload.
 */
final class SampleEvents {
    static final String SOURCE = "java-example";

    private SampleEvents() {}

    static List<Event> all(String accountId, Instant now) {
        Tag vip = tag(7, "vip");
        Tag java = tag(9, "java");
        return List.of(
                event(accountId, now, EventType.CONTACT_CREATED, ContactCreated.newBuilder()
                        .setContact(contact(List.of(vip))).build()),
                event(accountId, now, EventType.CONTACT_TAG_ADDED, ContactTagAdded.newBuilder()
                        .setContact(contact(List.of(vip, java))).setTag(java).build()),
                event(accountId, now, EventType.CONTACT_TAG_REMOVED, ContactTagRemoved.newBuilder()
                        .setContact(contact(List.of(java))).setTag(vip).build()),
                event(accountId, now, EventType.CONTACT_OPT_IN, ContactOptIn.newBuilder()
                        .setContact(contact(List.of(vip)))
                        .setFunnelStep(FunnelStep.newBuilder()
                                .setId(4).setName("Squeeze page").setType("optin")
                                .setFunnel(Funnel.newBuilder().setId(2).setName("Launch").build())
                                .build())
                        .build()),
                event(accountId, now, EventType.SALE_NEW, SaleNew.newBuilder()
                        .setCustomer(customer()).setOrder(order()).setPricePlan(pricePlan()).build()),
                event(accountId, now, EventType.SALE_CANCELED, SaleCanceled.newBuilder()
                        .setCustomer(customer()).setOrder(order()).setPricePlan(pricePlan())
                        .setCancellation(Cancellation.newBuilder()
                                .setReason(CancellationReason.subscription_canceled)
                                .setCanceledAt(Instant.parse("2024-07-01T00:00:00Z"))
                                .setOriginalOrderId(5001L)
                                .build())
                        .build()));
    }

    private static Event event(String accountId, Instant now, EventType type, Object payload) {
        return Event.newBuilder()
                .setEventId(UUID.randomUUID().toString())
                .setAccountId(accountId)
                .setOccurredAt(now)
                .setSource(SOURCE)
                .setType(type)
                .setPayload(payload)
                .build();
    }

    private static Tag tag(long id, String name) {
        return Tag.newBuilder().setId(id).setName(name).build();
    }

    private static Contact contact(List<Tag> tags) {
        return Contact.newBuilder()
                .setId(1001)
                .setEmail("ada@example.com")
                .setRegisteredAt(Instant.parse("2024-06-01T12:00:00Z"))
                .setLocale("en")
                .setSourceURL("https://example.com/signup")
                .setFields(List.of(ContactField.newBuilder()
                        .setFieldName("First name").setSlug("first_name").setValue("Ada").build()))
                .setTags(tags)
                .build();
    }

    private static Customer customer() {
        return Customer.newBuilder()
                .setId(3001)
                .setEmail("grace@example.com")
                .setPaymentProcessor("stripe")
                .setFields(Map.of("first_name", "Grace"))
                .build();
    }

    private static Order order() {
        return Order.newBuilder()
                .setId(5001)
                .setTotalPrice(47.0)
                .setCreatedAt(Instant.parse("2024-06-01T12:30:00Z"))
                .build();
    }

    private static PricePlan pricePlan() {
        return PricePlan.newBuilder()
                .setId(77)
                .setName("Pro monthly")
                .setCurrency("EUR")
                .setType(PricePlanType.subscription)
                .setAmount(47.0)
                .build();
    }
}
